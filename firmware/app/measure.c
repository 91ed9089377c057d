/*
 * One pass: paint the stack, run the model once between two reads of the time
 * counter (fb_layer_done takes the layers' times on the way), then report
 * status, time, arena and stack high-water marks, per-layer times and the
 * output.
 *
 * The paint byte is chosen by the host: it runs every input twice with two
 * different bytes and keeps the larger watermark, so a byte the model wrote
 * with the paint's value cannot hide. An ordinary model's input arrives after
 * the arena was painted, straight into fb_model_input(): no second input
 * buffer in RAM.
 */
#include "measure.h"

#include <string.h>

#include "command.h"
#include "fb_model.h"
#include "frame.h"
#include "hal.h"

#define LAYER_SLOTS (FB_NUM_LAYERS > 0 ? FB_NUM_LAYERS : 1)

static uint32_t layer_ticks[LAYER_SLOTS];
static uint32_t layer_calls;
uint64_t measure_layer_start;

/* Overrides the generated code's weak no-op: called after every layer. */
void fb_layer_done(int layer_index)
{
    uint64_t now = hal_time();
    if (layer_index >= 0 && layer_index < FB_NUM_LAYERS)
        layer_ticks[layer_index] = (uint32_t)(now - measure_layer_start);
    layer_calls++;
    measure_layer_start = now;
}

/* Highest arena byte that no longer holds the paint, plus one. */
static uint32_t arena_peak(uint8_t paint)
{
    const volatile uint8_t *arena = (const volatile uint8_t *)fb_arena;
    uint32_t n = FB_ARENA_BYTES;
    while (n > 0 && arena[n - 1] == paint)
        n--;
    return n;
}

void measure_pass(measurement_t *m, uint8_t paint)
{
    memset(layer_ticks, 0, sizeof layer_ticks);
    layer_calls = 0;

    hal_stack_paint(paint);
    size_t depth_at_call = hal_stack_depth();
    hal_time_restart(); /* the same ticks for the same work, however long the input took */
    uint64_t start = hal_time();
    measure_layer_start = start;
    int status = fb_model_run();
    uint64_t stop = hal_time();

    m->stack_used = hal_stack_used(paint);
    m->stack_at_call = depth_at_call;
    m->status = status;
    m->ticks = stop - start;
}

void measure_report(uint32_t seq, const measurement_t *m, uint64_t io_ticks, uint8_t paint)
{
    frame_writer_t w;
    answer_begin(&w, "RESULT", seq);
    frame_field_i32(&w, "status", m->status);
    frame_field_u64(&w, "ticks", m->ticks - io_ticks);
    frame_field_u64(&w, "io", io_ticks);
    frame_field_u64(&w, "arena", arena_peak(paint));
    frame_field_u64(&w, "stack", m->stack_used);
    frame_field_u64(&w, "stack_model", m->stack_used > m->stack_at_call ? m->stack_used - m->stack_at_call : 0);
    /* The paint reached the bottom of the stack: it overflowed (or came close). */
    frame_field_u64(&w, "overflow", m->stack_used >= hal_stack_size());
    frame_field_u64(&w, "calls", layer_calls);
    frame_field_u32_list(&w, "layers", layer_ticks, FB_NUM_LAYERS);
    /* every output, joined in order in one field (FB_OUTPUT_BYTES in all) */
    frame_field_bytes(&w, "out", fb_model_output(0), fb_model_output_bytes[0]);
    for (int i = 1; i < FB_NUM_OUTPUTS; i++)
        frame_field_bytes_more(&w, fb_model_output(i), fb_model_output_bytes[i]);
    frame_end(&w);
}
