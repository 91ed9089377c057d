#include "command.h"

int command_receive(fb_command_t *command)
{
    if (frame_receive(command->text, sizeof command->text) < 0) {
        command->text[0] = '\0';
        command->seq = 0;
        return 0;
    }
    if (!frame_get_u32(command->text, "seq", &command->seq))
        command->seq = 0;
    return 1;
}

int command_is(const fb_command_t *command, const char *kind)
{
    return frame_kind_is(command->text, kind);
}

void answer_begin(frame_writer_t *w, const char *kind, uint32_t seq)
{
    frame_begin(w, kind);
    frame_field_u64(w, "seq", seq);
}

void answer_simple(const char *kind, uint32_t seq)
{
    frame_writer_t w;
    answer_begin(&w, kind, seq);
    frame_end(&w);
}

void answer_ack(uint32_t seq, uint32_t got)
{
    frame_writer_t w;
    answer_begin(&w, "ACK", seq);
    frame_field_u64(&w, "got", got);
    frame_end(&w);
}

void answer_nak(uint32_t seq, const char *why, uint32_t want)
{
    frame_writer_t w;
    answer_begin(&w, "NAK", seq);
    frame_field_str(&w, "why", why);
    frame_field_u64(&w, "want", want);
    frame_end(&w);
}
