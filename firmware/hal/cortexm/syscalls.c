/*
 * The two newlib hooks a bare-metal image may pull in. There is no heap: the
 * memory plan puts every tensor in the arena, so a malloc() in a kernel must
 * fail loudly instead of growing into the stack.
 */
#include <errno.h>
#include <stddef.h>

#include "../hal.h"

void *_sbrk(ptrdiff_t increment)
{
    (void)increment;
    errno = ENOMEM;
    return (void *)-1;
}

void _exit(int code)
{
    hal_exit(code);
}
