/*
 * Measuring one pass of the model: its time, its arena and stack high-water
 * marks and its layers' times, reported as RESULT.
 */
#ifndef FB_MEASURE_H
#define FB_MEASURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;           /* fb_model_run's */
    uint64_t ticks;       /* between the two time samples around fb_model_run, input I/O included */
    size_t stack_used;    /* from the top of the stack */
    size_t stack_at_call; /* in use when fb_model_run was called */
} measurement_t;

/* Paints the free stack with `paint` and runs the model once between two
 * reads of the time counter. The arena was painted with `paint` before the
 * input arrived. */
void measure_pass(measurement_t *m, uint8_t paint);

/* RESULT for the command `seq`: ticks= leaves out the `io_ticks` the pass
 * spent reading streamed input (0 for other models). */
void measure_report(uint32_t seq, const measurement_t *m, uint64_t io_ticks, uint8_t paint);

/* When the current layer started (hal_time); fb_layer_done times the layer
 * from here. Exposed so that a read of streamed input can move it on by the
 * ticks the read took (measure_leave_out_of_layer). A variable rather than a
 * function: the read runs inside the timed run, where a call would add its
 * own instructions to the model's count. */
extern uint64_t measure_layer_start;

static inline void measure_leave_out_of_layer(uint64_t ticks)
{
    measure_layer_start += ticks;
}

#endif
