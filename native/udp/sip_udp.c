/*
 * sip_udp: a UDP socket for the edge's listeners that reads datagrams in
 * batches (recvmmsg) and sends them in batches (sendmmsg) or one at a time
 * (sendto), with SO_REUSEPORT so each cluster worker can own a socket on
 * the shared port.
 *
 * Why: under load Node's dgram pays per datagram for a recvmsg, a second
 * recvmsg that returns EAGAIN, a JS callback, a Buffer with its own backing
 * store, an rinfo object, and per send a SendWrap and a completion tick
 * (perf/RESULTS.md, "The floor: a bare Node relay"). Here one readable
 * event costs one recvmmsg of up to BATCH datagrams and one call into JS;
 * the datagrams land in a receive area the JS side allocated and reach JS
 * as one string each, their senders in a table JS reads in place
 * (src/transport/native-udp.ts); what JS sends while it
 * handles them is held and goes out in one sendmmsg (js_send, js_flush),
 * with no request object and no callback per datagram.
 *
 * The socket is polled on Node's own libuv loop (uv_poll_t), so the
 * callbacks run on the JS thread like any other I/O.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <linux/filter.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Datagrams read per recvmmsg; also the number of slots in the receive area. */
#define BATCH 32
/* One slot holds the largest UDP payload (65,527 bytes over IPv6), so nothing is ever truncated. */
#define SLOT 65536
/* Table entry per datagram, in int32: length, port, family (4/6), v4 address, text length, then 46 bytes of text. */
#define META_INTS 16
/* recvmmsg rounds per readable event before the loop gets a turn again. */
#define ROUNDS 4
/* Sends held for one sendmmsg: at most this many, in a copy area of this size. */
#define SEND_BATCH 64
#define SEND_AREA (1 << 20)

typedef struct {
  int fd;
  int family;
  int closing;
  uv_poll_t poll;
  napi_env env;
  napi_ref on_batch;
  napi_ref area_ref;
  napi_ref meta_ref;
  napi_async_context actx;
  uint8_t *area;
  int32_t *meta;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage from[BATCH];
  /* Sends held until flush (see js_send). */
  int out_n;
  size_t out_used;
  uint8_t *out_area;
  struct mmsghdr out[SEND_BATCH];
  struct iovec out_iov[SEND_BATCH];
  struct sockaddr_storage out_to[SEND_BATCH];
} sock_t;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

/* Fills one table entry from the sender's address. */
static void describe(sock_t *s, int i, unsigned len) {
  int32_t *m = s->meta + i * META_INTS;
  char *text = (char *)(m + 5);
  m[0] = (int32_t)len;
  struct sockaddr_storage *a = &s->from[i];
  if (a->ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)a;
    m[1] = ntohs(in->sin_port);
    m[2] = 4;
    memcpy(&m[3], &in->sin_addr, 4);
    m[4] = 0; /* the JS side names v4 addresses from m[3] and a cache */
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a;
    m[1] = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      /* A v4 peer on a dual-stack socket is reported as v4 (as normalizeAddress does for dgram). */
      m[2] = 4;
      memcpy(&m[3], &in6->sin6_addr.s6_addr[12], 4);
      m[4] = 0;
    } else {
      m[2] = 6;
      m[3] = 0;
      if (inet_ntop(AF_INET6, &in6->sin6_addr, text, 46) == NULL) text[0] = 0;
      m[4] = (int32_t)strlen(text);
    }
  }
}

/*
 * onBatch(n, texts): n datagrams, each handed over as text, one character
 * per byte (latin1), which is how the edge reads a message (src/sip/parse.ts).
 * Made here straight from the receive area: one copy into the string, where
 * a Buffer per datagram decoded by the parser was two copies and two objects.
 * A negative n is an error code, with no texts.
 */
static void call_js(sock_t *s, int n) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, argv[2], result;
  napi_get_reference_value(env, s->on_batch, &fn);
  napi_get_global(env, &recv); /* napi_make_callback wants an object as receiver */
  napi_create_int32(env, n, &argv[0]);
  int argc = 1;
  if (n > 0) {
    napi_create_array_with_length(env, (size_t)n, &argv[1]);
    for (int i = 0; i < n; i++) {
      napi_value text;
      if (napi_create_string_latin1(env, (const char *)s->area + (size_t)i * SLOT, s->msgs[i].msg_len, &text) != napi_ok) {
        /* Out of memory: nothing can be handed over; the datagrams are lost as if dropped. */
        napi_close_handle_scope(env, scope);
        return;
      }
      napi_set_element(env, argv[1], (uint32_t)i, text);
    }
    argc = 2;
  }
  napi_status st = napi_make_callback(env, s->actx, recv, fn, argc, argv, &result);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *s = (sock_t *)h->data;
  (void)events;
  if (s->closing) return;
  if (status < 0) {
    call_js(s, status); /* negative: a libuv error code */
    return;
  }
  for (int round = 0; round < ROUNDS && !s->closing; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->msgs[i].msg_hdr.msg_name = &s->from[i];
      s->msgs[i].msg_hdr.msg_namelen = sizeof s->from[i];
      s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
      s->msgs[i].msg_hdr.msg_iovlen = 1;
      s->msgs[i].msg_hdr.msg_control = NULL;
      s->msgs[i].msg_hdr.msg_controllen = 0;
      s->msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(s->fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) call_js(s, -errno);
      return;
    }
    if (n == 0) return;
    for (int i = 0; i < n; i++) describe(s, i, s->msgs[i].msg_len);
    call_js(s, n);
    if (n < BATCH) return;
  }
}

static void on_closed(uv_handle_t *h) {
  sock_t *s = (sock_t *)h->data;
  napi_env env = s->env;
  napi_delete_reference(env, s->on_batch);
  napi_delete_reference(env, s->area_ref);
  napi_delete_reference(env, s->meta_ref);
  napi_async_destroy(env, s->actx);
  /* Closed only now: the fd stays ours until libuv has dropped the handle. */
  close(s->fd);
  free(s->out_area);
  free(s);
}

static int parse_address(const char *text, int family, uint16_t port, struct sockaddr_storage *out, socklen_t *len) {
  memset(out, 0, sizeof *out);
  if (family == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    if (inet_pton(AF_INET, text, &in->sin_addr) != 1) return -1;
    *len = sizeof *in;
    return 0;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
    *len = sizeof *in6;
    return 0;
  }
  /* A v4 destination from a dual-stack v6 socket goes as a v4-mapped address. */
  struct in_addr v4;
  if (inet_pton(AF_INET, text, &v4) != 1) return -1;
  in6->sin6_addr.s6_addr[10] = 0xff;
  in6->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&in6->sin6_addr.s6_addr[12], &v4, 4);
  *len = sizeof *in6;
  return 0;
}

static sock_t *unwrap(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (sock_t *)p;
}

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

/*
 * Each datagram to the group goes to a random member: the kernel's default
 * (a hash of the source address and port) would give every datagram of one
 * busy peer (a carrier trunk, one SIPp) to one worker. An index past the
 * group's current size (a worker restarting) falls back to the hash.
 */
static int spread_randomly(int fd, uint32_t group) {
  struct sock_filter code[] = {
    {BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM)},
    {BPF_ALU | BPF_MOD | BPF_K, 0, 0, group},
    {BPF_RET | BPF_A, 0, 0, 0},
  };
  struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog);
}

/*
 * open(family, address, port, group, bufferBytes, area, meta, onBatch) -> [handle, port]
 * group: 0 = a socket of its own; n >= 1 = SO_REUSEPORT, one of n sockets
 * on the port (n >= 2 also spreads datagrams at random over them).
 */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "open: 8 arguments");
    return NULL;
  }
  int32_t family, port, buffer_bytes, group;
  char address[64];
  size_t alen;
  napi_get_value_int32(env, argv[0], &family);
  if (napi_get_value_string_latin1(env, argv[1], address, sizeof address, &alen) != napi_ok) {
    napi_throw_type_error(env, NULL, "open: address");
    return NULL;
  }
  napi_get_value_int32(env, argv[2], &port);
  napi_get_value_int32(env, argv[3], &group);
  napi_get_value_int32(env, argv[4], &buffer_bytes);
  void *area;
  size_t area_len;
  if (napi_get_buffer_info(env, argv[5], &area, &area_len) != napi_ok || area_len < (size_t)BATCH * SLOT) {
    napi_throw_type_error(env, NULL, "open: receive area too small");
    return NULL;
  }
  napi_typedarray_type ttype;
  size_t meta_len;
  void *meta;
  napi_value meta_ab;
  size_t meta_off;
  if (napi_get_typedarray_info(env, argv[6], &ttype, &meta_len, &meta, &meta_ab, &meta_off) != napi_ok || ttype != napi_int32_array || meta_len < (size_t)BATCH * META_INTS) {
    napi_throw_type_error(env, NULL, "open: table too small");
    return NULL;
  }

  struct sockaddr_storage at;
  socklen_t at_len;
  if (parse_address(address, family, (uint16_t)port, &at, &at_len) != 0) {
    napi_throw_type_error(env, NULL, "open: address is not an IP literal of the family");
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  if (group > 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_REUSEPORT", e);
  }
  if (buffer_bytes > 0) {
    /* Refused sizes are not fatal (as dgram's setRecvBufferSize is caught in udp.ts); the kernel caps them at rmem_max/wmem_max. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
  }
  if (bind(fd, (struct sockaddr *)&at, at_len) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  /* After bind: the program belongs to the group, which the bind made or joined. */
  if (group > 1 && spread_randomly(fd, (uint32_t)group) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_ATTACH_REUSEPORT_CBPF", e);
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &blen);
  int bound_port = bound.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&bound)->sin_port) : ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);

  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  /* Everything that can fail comes before the references below, so a failure leaves nothing behind. */
  sock_t *s = calloc(1, sizeof *s);
  uint8_t *out_area = s == NULL ? NULL : malloc(SEND_AREA);
  if (out_area == NULL) {
    close(fd);
    free(s);
    return throw_errno(env, "open", ENOMEM);
  }
  int pe = uv_poll_init(loop, &s->poll, fd);
  if (pe != 0) {
    close(fd);
    free(out_area);
    free(s);
    return throw_errno(env, "uv_poll_init", -pe);
  }
  s->out_area = out_area;
  s->fd = fd;
  s->family = family;
  s->env = env;
  s->area = area;
  s->meta = meta;
  for (int i = 0; i < BATCH; i++) {
    s->iov[i].iov_base = s->area + (size_t)i * SLOT;
    s->iov[i].iov_len = SLOT;
  }
  napi_create_reference(env, argv[7], 1, &s->on_batch);
  napi_create_reference(env, argv[5], 1, &s->area_ref);
  napi_create_reference(env, argv[6], 1, &s->meta_ref);
  napi_value name;
  napi_create_string_utf8(env, "sip-udp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->actx);

  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_poll);

  napi_value handle, out, p;
  napi_create_external(env, s, NULL, NULL, &handle);
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, handle);
  napi_create_int32(env, bound_port, &p);
  napi_set_element(env, out, 1, p);
  return out;
}

/*
 * send(handle, data, port, address, hold) -> 0, an errno, or -1.
 * data is a Buffer or a string of one character per byte (latin1, below).
 *
 * Without hold: one sendto now; 0 or its errno.
 * With hold: the datagram is copied into the socket's send area and goes
 * out with the others at flush(), in one sendmmsg. The JS side holds sends
 * while it handles a batch of received datagrams, which under load is
 * 8-25 of them: one syscall instead of one per answer or forwarded
 * request, and the receiving peer woken once. -1: the area is full,
 * nothing was done (flush, then send again). A bad address is EINVAL at
 * once either way.
 */
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sock_t *s = unwrap(env, argv[0]);
  napi_value rv;
  int result = 0;
  if (s == NULL || s->closing) {
    napi_create_int32(env, EBADF, &rv);
    return rv;
  }
  int32_t port;
  char address[64];
  size_t alen;
  bool hold = false;
  napi_get_value_int32(env, argv[2], &port);
  if (argc >= 5) napi_get_value_bool(env, argv[4], &hold);
  struct sockaddr_storage to;
  socklen_t tolen;
  if (napi_get_value_string_latin1(env, argv[3], address, sizeof address, &alen) != napi_ok || parse_address(address, s->family, (uint16_t)port, &to, &tolen) != 0) {
    napi_create_int32(env, EINVAL, &rv);
    return rv;
  }
  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  void *data = NULL;
  size_t len = 0;
  char *text = NULL;
  /*
   * Text is one character per byte (latin1), as the edge reads messages
   * (src/transport/bytes.ts): the characters are the datagram's bytes. A
   * held text is written straight into the send area; one sent now is
   * copied out first.
   */
  if (is_buffer) {
    napi_get_buffer_info(env, argv[1], &data, &len);
  } else if (napi_get_value_string_latin1(env, argv[1], NULL, 0, &len) != napi_ok) {
    napi_create_int32(env, EINVAL, &rv);
    return rv;
  } else if (!hold) {
    text = malloc(len + 1);
    if (text == NULL) {
      napi_create_int32(env, ENOMEM, &rv);
      return rv;
    }
    napi_get_value_string_latin1(env, argv[1], text, len + 1, &len);
    data = text;
  }
  if (!hold) {
    if (sendto(s->fd, data, len, 0, (struct sockaddr *)&to, tolen) < 0) result = errno;
  } else if (s->out_n == SEND_BATCH || s->out_used + len + 1 > SEND_AREA) {
    /* (+1: the latin1 copy of a text writes a terminating NUL after it.) */
    result = -1;
  } else {
    int k = s->out_n++;
    uint8_t *at = s->out_area + s->out_used;
    if (is_buffer) memcpy(at, data, len);
    else napi_get_value_string_latin1(env, argv[1], (char *)at, len + 1, &len);
    s->out_used += len;
    s->out_to[k] = to;
    s->out_iov[k].iov_base = at;
    s->out_iov[k].iov_len = len;
    memset(&s->out[k], 0, sizeof s->out[k]);
    s->out[k].msg_hdr.msg_name = &s->out_to[k];
    s->out[k].msg_hdr.msg_namelen = tolen;
    s->out[k].msg_hdr.msg_iov = &s->out_iov[k];
    s->out[k].msg_hdr.msg_iovlen = 1;
  }
  free(text);
  napi_create_int32(env, result, &rv);
  return rv;
}

/*
 * flush(handle, status) -> number of held sends that failed. Sends what
 * send(..., hold) held, in order; status[i] gets the errno of held send i
 * (0: sent). A failed datagram is skipped and the rest still go.
 */
static napi_value js_flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sock_t *s = unwrap(env, argv[0]);
  napi_value rv;
  int failed = 0;
  if (s != NULL && s->out_n > 0) {
    int32_t *status = NULL;
    size_t status_len = 0;
    napi_typedarray_type ttype;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, argv[1], &ttype, &status_len, (void **)&status, &ab, &off) != napi_ok || ttype != napi_int32_array) status_len = 0;
    int n = s->out_n;
    int at = 0;
    while (at < n) {
      int r = s->closing ? -1 : sendmmsg(s->fd, s->out + at, (unsigned)(n - at), 0);
      if (r < 0) {
        if (errno == EINTR && !s->closing) continue;
        if ((size_t)at < status_len) status[at] = s->closing ? EBADF : errno;
        failed++;
        at++;
        continue;
      }
      for (int i = at; i < at + r; i++)
        if ((size_t)i < status_len) status[i] = 0;
      at += r;
    }
    s->out_n = 0;
    s->out_used = 0;
  }
  napi_create_int32(env, failed, &rv);
  return rv;
}

/*
 * quiesce(handle): takes the socket out of its SO_REUSEPORT group's share
 * of new datagrams without closing it, by connecting it to a peer that
 * never sends (the discard port on its own address): the kernel then
 * steers every datagram from anyone else to the other sockets of the
 * group. What is already queued stays readable, so a draining worker reads
 * it all before it closes; closing at once would lose it.
 */
static napi_value js_quiesce(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sock_t *s = unwrap(env, argv[0]);
  napi_value rv;
  int result = EBADF;
  if (s != NULL && !s->closing) {
    struct sockaddr_storage self;
    socklen_t len = sizeof self;
    result = 0;
    if (getsockname(s->fd, (struct sockaddr *)&self, &len) != 0) result = errno;
    else {
      if (self.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&self;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons(9);
      } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&self;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(9);
      }
      if (connect(s->fd, (struct sockaddr *)&self, len) != 0) result = errno;
    }
  }
  napi_create_int32(env, result, &rv);
  return rv;
}

/* close(handle): stops reading; the socket is closed when libuv has let go of it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sock_t *s = unwrap(env, argv[0]);
  if (s != NULL && !s->closing) {
    s->closing = 1;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_closed);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
    {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
    {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
    {"quiesce", NULL, js_quiesce, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_int32(env, BATCH, &v);
  napi_set_named_property(env, exports, "BATCH", v);
  napi_create_int32(env, SLOT, &v);
  napi_set_named_property(env, exports, "SLOT", v);
  napi_create_int32(env, META_INTS, &v);
  napi_set_named_property(env, exports, "META_INTS", v);
  napi_create_int32(env, SEND_BATCH, &v);
  napi_set_named_property(env, exports, "SEND_BATCH", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
