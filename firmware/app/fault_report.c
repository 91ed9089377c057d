/* The FAULT frame: what the fault handler saw, for the host's crash report. */
#include "frame.h"
#include "hal.h"

/* Overrides the HAL's weak hook; the handler exits after it. */
void hal_fault_report(const hal_fault_t *f)
{
    frame_writer_t w;
    frame_begin(&w, "FAULT");
    frame_field_u64(&w, "exc", f->exception);
    frame_field_hex32(&w, "pc", f->pc);
    frame_field_hex32(&w, "lr", f->lr);
    frame_field_hex32(&w, "xpsr", f->xpsr);
    frame_field_hex32(&w, "cfsr", f->cfsr);
    frame_field_hex32(&w, "hfsr", f->hfsr);
    frame_field_hex32(&w, "mmfar", f->mmfar);
    frame_field_hex32(&w, "bfar", f->bfar);
    frame_field_hex32(&w, "sp", f->sp);
    frame_end(&w);
}
