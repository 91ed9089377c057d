/* Semihosting for emulators (firmware/hal/common/semihost.c): ending the run
 * and reading host files. Only call these where a debugger or emulator answers
 * the trap; on a bare board the trap faults. */
#ifndef FB_SEMIHOST_H
#define FB_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* SYS_EXIT_EXTENDED: the emulator quits with `code` as its exit status. */
void semihost_exit(int code) __attribute__((noreturn));
/* Host files kept open across reads (the hal_host_open family). */
int semihost_open(const char *path, size_t expected_length);
int semihost_read_at(int handle, uint32_t offset, void *buffer, size_t length);
void semihost_close(int handle);

#endif
