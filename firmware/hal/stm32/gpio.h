/*
 * The STM32 GPIO port (same register map on the F4, RM0090 section 8.4, and
 * the H7, RM0433 section 11.4; only the ports' base addresses differ): what
 * the silicon HALs need to hand the console's pins to the USART.
 */
#ifndef FB_STM32_GPIO_H
#define FB_STM32_GPIO_H

#include <stdint.h>

#include "../cortexm/cortexm.h"

#define STM32_GPIO_MODER(base) CM_REG((base) + 0x00u)
#define STM32_GPIO_OSPEEDR(base) CM_REG((base) + 0x08u)
#define STM32_GPIO_PUPDR(base) CM_REG((base) + 0x0Cu)
#define STM32_GPIO_AFR(base, pin) CM_REG((base) + 0x20u + 4u * ((pin) >> 3))

/* Pin `pin` of the port at `base` to alternate function `af`, high speed,
 * with the pull-up on or off (no pull-down). */
static inline void stm32_gpio_to_af(uint32_t base, uint32_t pin, uint32_t af, int pull_up)
{
    STM32_GPIO_AFR(base, pin) = (STM32_GPIO_AFR(base, pin) & ~(0xFu << (4u * (pin & 7u)))) |
                                (af << (4u * (pin & 7u)));
    STM32_GPIO_OSPEEDR(base) |= 2u << (2u * pin);
    STM32_GPIO_PUPDR(base) = (STM32_GPIO_PUPDR(base) & ~(3u << (2u * pin))) | ((pull_up ? 1u : 0u) << (2u * pin));
    STM32_GPIO_MODER(base) = (STM32_GPIO_MODER(base) & ~(3u << (2u * pin))) | (2u << (2u * pin));
}

#endif /* FB_STM32_GPIO_H */
