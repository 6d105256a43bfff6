/* SPDX-License-Identifier: MIT */
/* relay_response: the upstream's answer, from the parser to the client. A 101 goes on only
 * as the valid answer to the websocket upgrade the client asked for; interim responses go on to
 * an HTTP/1.1 client; a final response is re-serialised with airlock's own framing, its body
 * streamed as it arrives (through a redactor when a secret went upstream on the connection). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "airlock/redact.h"
#include "relay_internal.h"

static bool field_is(const struct http_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static bool valid_websocket_101(const struct exchange *ex, const struct http_head *h)
{
    const struct http_field *accept = http_head_find(h, "sec-websocket-accept");
    return ex->upgrade_asked && http_head_has_token(h, "connection", "upgrade") &&
           http_head_has_token(h, "upgrade", "websocket") && accept &&
           accept->value_len == strlen(ex->ws_accept) &&
           memcmp(accept->value, ex->ws_accept, accept->value_len) == 0;
}

/* An upstream that echoes a secret back (in a redirect, an error field, a trailer) must not
 * hand it to the agent: on an exchange that carried one, every field value has each secret,
 * raw or encoded (Base64 too), replaced by its placeholder. */
void relay_append_redacted(struct relay *r, struct http_buf *b, const char *p, size_t len)
{
    if (r->ex.nredact == 0)
        http_buf_append(b, p, len);
    else
        creds_redact_field(r->ex.redact_with, r->ex.nredact, p, len, b);
}

static bool client_is_http10(const struct exchange *ex)
{
    return ex->req && ex->req->version_minor == 0;
}

/* The response's framing as parsed, written by us (RFC 9112 §6). Interim responses have none;
 * a HEAD, 204 or 304 response keeps its Content-Length as metadata. */
static void write_framing(const struct exchange *ex, const struct http_head *h, struct http_buf *b)
{
    if (h->status < 200)
        return;
    if (ex->resp_chunked_out) {
        /* chunked as the upstream sent it, or re-framed because redaction changes the length */
        http_buf_printf(b, "Transfer-Encoding: %s\r\n",
                        h->transfer_codings ? h->transfer_codings : "chunked");
    } else if (h->has_content_length && !ex->redact) {
        http_buf_printf(b, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
    } else if (h->transfer_codings && !h->chunked && !client_is_http10(ex)) {
        /* codings without chunked: the body runs until close, still coded */
        http_buf_printf(b, "Transfer-Encoding: %s\r\n", h->transfer_codings);
    }
}

static int write_head(struct relay *r, const struct http_head *h, bool upgrade)
{
    struct exchange *ex = &r->ex;
    struct http_buf b = {0};
    http_buf_printf(&b, "HTTP/1.1 %d ", h->status);
    if (ex->nredact == 0)
        http_buf_append(&b, h->reason, h->reason_len);
    else
        creds_redact_text(ex->redact_with, ex->nredact, h->reason, h->reason_len, &b);
    http_buf_puts(&b, "\r\n");
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (http_field_is_framing(f) || http_field_is_hop_by_hop(h, f))
            continue;
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        relay_append_redacted(r, &b, f->value, f->value_len);
        http_buf_puts(&b, "\r\n");
    }
    if (upgrade)
        http_buf_puts(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (h->status >= 200 && ex->close_after)
        http_buf_puts(&b, "Connection: close\r\n");
    write_framing(ex, h, &b);
    http_buf_puts(&b, "\r\n");
    int rc = b.failed ? -1 : relay_write(r, SIDE_CLIENT, b.data, b.len);
    http_buf_free(&b);
    return rc;
}

/* A secret went upstream on this exchange: the body goes through a redactor. The placeholder
 * and the secret differ in length, so a Content-Length no longer holds: the body is re-framed
 * chunked to an HTTP/1.1 client, and close-delimited to an HTTP/1.0 one (RFC 9112 §6.3).
 * 0, -1 when out of memory, 1 when the body has a coding or is a part (it cannot be redacted). */
static int start_redaction(struct exchange *ex, const struct http_head *head)
{
    /* A compressed body hides an echoed secret from the redactor: the request asked for
     * identity, so an upstream that encodes anyway is refused rather than relayed blind. */
    for (size_t i = 0; i < head->nfields; i++) {
        const struct http_field *f = &head->fields[i];
        if (field_is(f, "content-encoding") &&
            !(f->value_len == 8 && strncasecmp(f->value, "identity", 8) == 0))
            return 1;
    }
    /* so does a transfer coding other than the chunks we decode */
    if (head->transfer_codings && strcmp(head->transfer_codings, "chunked") != 0)
        return 1;
    /* and so does a part of a representation: parts asked for one by one would hand the
     * secret over in pieces */
    if (head->status == 206 || http_head_find(head, "content-range"))
        return 1;
    ex->redact = creds_redactor(ex->redact_with, ex->nredact);
    if (!ex->redact)
        return -1;
    if (head->has_content_length) {
        if (client_is_http10(ex))
            ex->close_after = true;
        else
            ex->resp_chunked_out = true;
    }
    return 0;
}

static int on_switching_protocols(struct relay *r, struct http_head *head)
{
    struct exchange *ex = &r->ex;
    if (!valid_websocket_101(ex, head)) {
        http_head_free(head);
        relay_log_finding(r, 502, LOG_SEV_HIGH,
                          ex->upgrade_asked ? "invalid 101 Switching Protocols"
                                            : "unsolicited 101 Switching Protocols");
        relay_refuse(r, 502, "unsolicited_upgrade",
                     "the upstream switched protocols without a valid websocket upgrade that "
                     "the client asked for");
        return HTTP_HEAD_ERROR;
    }
    ex->status = 101;
    ex->upgraded = true;
    int rc = write_head(r, head, true);
    http_head_free(head);
    if (rc < 0)
        return HTTP_HEAD_ERROR;
    /* Logged now: the exchange has no end of its own (the pipe follows). */
    relay_log_upgraded(r);
    return HTTP_HEAD_CONTINUE;
}

/* How the final response's body is framed to the client. */
static void choose_framing(struct exchange *ex, const struct http_head *head, bool no_body)
{
    if (!head->keep_alive)
        ex->close_after = true;
    if (no_body || head->has_content_length)
        return;
    if (head->chunked && !client_is_http10(ex))
        ex->resp_chunked_out = true;
    else
        /* Read until close (RFC 9112 §6.3), or chunked to an HTTP/1.0 client, which gets the
         * decoded body ended by our close: either way the connection ends with it. */
        ex->close_after = true;
}

int relay_on_resp_head(void *owner, struct http_head *head)
{
    struct relay *r = owner;
    struct exchange *ex = &r->ex;
    int status = head->status;
    if (!ex->active) {
        /* An answer nobody asked for (a 408 before closing an idle connection, say). */
        http_head_free(head);
        relay_report(
            r, &(struct relay_result){.outcome = RELAY_CONSUMED,
                                      .reason = "upstream sent a response without a request"});
        return HTTP_HEAD_ERROR;
    }
    if (status == 101)
        return on_switching_protocols(r, head);
    if (status < 200) {
        /* Interim responses go on to an HTTP/1.1 client (RFC 9110 §15.2) and the final one is
         * still to come. */
        ex->interim = true;
        int rc = client_is_http10(ex) ? 0 : write_head(r, head, false);
        http_head_free(head);
        return rc < 0 ? HTTP_HEAD_ERROR : HTTP_HEAD_CONTINUE;
    }
    ex->status = status;
    bool no_body = ex->head_request || status == 204 || status == 304;
    choose_framing(ex, head, no_body);
    int red = !no_body && ex->nredact > 0 ? start_redaction(ex, head) : 0;
    if (red != 0) {
        http_head_free(head);
        if (red > 0) {
            relay_log_finding(r, 502, LOG_SEV_HIGH,
                              "encoded response to a request that carried a secret");
            relay_refuse(r, 502, "unredactable_response",
                         "the upstream encoded (compressed) its answer to a request that "
                         "carried a credential, so it cannot be checked for an echoed secret");
        } else {
            relay_refuse(r, 502, "internal_error", "out of memory");
        }
        return HTTP_HEAD_ERROR;
    }
    int rc = write_head(r, head, false);
    http_head_free(head);
    if (rc < 0)
        return HTTP_HEAD_ERROR;
    ex->resp_head_sent = true;
    r->io->progress(r->ctx, RELAY_RESPONSE_STARTED);
    return no_body ? HTTP_HEAD_NO_BODY : HTTP_HEAD_CONTINUE;
}

static int write_body(struct relay *r, const char *p, size_t len)
{
    return r->ex.resp_chunked_out ? relay_write_chunk(r, SIDE_CLIENT, p, len)
                                  : relay_write(r, SIDE_CLIENT, p, len);
}

/* Pass the settled part of a body span through the redactor (held-back bytes go out with the
 * next span or at the end); an empty result writes nothing, so no empty chunk ends the body. */
static int write_redacted(struct relay *r, const char *p, size_t len, bool last)
{
    struct http_buf out = {0};
    if (last)
        redact_finish(r->ex.redact, &out);
    else
        redact_feed(r->ex.redact, p, len, &out);
    int rc = out.failed ? -1 : out.len ? write_body(r, out.data, out.len) : 0;
    http_buf_free(&out);
    return rc;
}

int relay_on_resp_body(void *owner, const char *p, size_t len)
{
    struct relay *r = owner;
    if (r->stopped)
        return -1;
    int rc = r->ex.redact ? write_redacted(r, p, len, false) : write_body(r, p, len);
    return rc < 0 ? -1 : 0;
}

int relay_on_resp_complete(void *owner, const struct http_head *trailers)
{
    struct relay *r = owner;
    struct exchange *ex = &r->ex;
    if (r->stopped)
        return -1;
    if (ex->interim) {
        ex->interim = false;
        return 0;
    }
    if (ex->upgraded)
        return 0; /* HTTP_UPGRADE follows: relay_feed reports UPGRADED */
    if (ex->redact && write_redacted(r, NULL, 0, true) < 0)
        return -1;
    if (ex->resp_chunked_out && relay_write_last_chunk(r, SIDE_CLIENT, trailers) < 0)
        return -1;
    if (!http_parser_keep_alive(&r->resp_parser))
        ex->close_after = true; /* the parser reads nothing after this message */
    ex->resp_done = true;
    if (!ex->req_done) {
        /* Answered before the request ended (an early 4xx, say): the rest of the request body
         * cannot be told apart from a next request without reading it all; close instead. */
        relay_exchange_end(r, RELAY_CONSUMED);
        return -1;
    }
    relay_exchange_end(r, ex->close_after ? RELAY_CONSUMED : RELAY_REUSABLE);
    return r->stopped ? -1 : HTTP_PAUSE_BODY;
}
