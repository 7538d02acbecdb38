/*
 * crowbar_dhcp_udp: the DHCP sidecar's port-67 socket loop in C (ADR 0023).
 *
 * Node's dgram costs one recvmsg, one call into JS and one sendmsg (with its request object and
 * callback) per datagram, which under perfdhcp was most of a lease's CPU. Here one thread blocks
 * in recvmmsg and hands every batch it read to JS in one call; JS decides every reply (the C side
 * never parses DHCP) and sends the batch's replies with one sendmmsg.
 *
 * One socket on 0.0.0.0:port receives broadcasts and unicasts alike. IP_PKTINFO says which
 * interface and destination address each datagram came in on, and on the way out it sets the
 * source address of each reply: a limited broadcast from the server address leaves the interface
 * that owns it, as from dgram's socket bound to that address (ADR 0006).
 *
 * Back-pressure: the thread reads again only when JS has taken all but one of the batches it
 * handed over, so waiting datagrams stay in the kernel's receive buffer, whose size
 * (SO_RCVBUF) bounds how stale the oldest can get, as with dgram. Nothing queues in C.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ADDON_NAME "crowbar_dhcp_udp"
#include "napi-addon.h"

#define BATCH 64
/* Larger datagrams are not DHCP (it fits in 1500 bytes); they arrive cut, flagged, and JS counts
 * them as malformed. */
#define SLOT 4096
/* Per received datagram: offset, length, source address, source port, interface index,
 * destination address, flags. Addresses in host byte order. */
#define META 8
#define FLAG_TRUNC 1u
/* Per reply to send: destination address, destination port, source address (0: the kernel's). */
#define SEND_META 4
/* Batches handed to JS and not yet handled; the thread waits rather than read past this. */
#define IN_FLIGHT 2

typedef struct {
  uint64_t batches, datagrams, truncated, send_errors, sent;
} counters_t;

typedef struct server {
  int fd, stopping, closed, started;
  /* Owners: the JS handle and the threadsafe function (queued batches point here); the last to
   * let go frees it, so neither close() nor a late batch touches freed memory. */
  int refs;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int in_flight; /* guarded by mu */
  uint8_t buf[BATCH][SLOT];
  struct mmsghdr in[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in addr[BATCH];
  /* Room for one IP_PKTINFO control message per datagram. */
  uint8_t ctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))] __attribute__((aligned(8)));
  counters_t c;
  napi_threadsafe_function tsfn;
} server_t;

/* One batch on its way to JS: the datagrams packed one after another, and their META words. */
typedef struct {
  server_t *s;
  uint32_t n, bytes;
  uint32_t meta[BATCH * META];
  uint8_t data[];
} batch_t;

static void batch_done(server_t *s) {
  pthread_mutex_lock(&s->mu);
  s->in_flight--;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void *serve(void *arg) {
  server_t *s = arg;
  for (int i = 0; i < BATCH; i++) {
    s->iov[i].iov_base = s->buf[i];
    s->iov[i].iov_len = SLOT;
    memset(&s->in[i], 0, sizeof(s->in[i]));
    s->in[i].msg_hdr.msg_name = &s->addr[i];
    s->in[i].msg_hdr.msg_iov = &s->iov[i];
    s->in[i].msg_hdr.msg_iovlen = 1;
    s->in[i].msg_hdr.msg_control = s->ctl[i];
  }
  while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
    /* Back-pressure (see the top): the kernel's buffer is the only queue. The wait ends when JS
     * finishes a batch or close() says stop. */
    pthread_mutex_lock(&s->mu);
    while (s->in_flight >= IN_FLIGHT && !__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
      pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) break;
    for (int i = 0; i < BATCH; i++) {
      s->in[i].msg_hdr.msg_namelen = sizeof(s->addr[i]);
      s->in[i].msg_hdr.msg_controllen = sizeof(s->ctl[i]);
      s->in[i].msg_hdr.msg_flags = 0;
    }
    /* Blocks for the first datagram, then takes what else is queued: one call per batch. */
    int n = recvmmsg(s->fd, s->in, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) {
      if (n < 0 && (errno == EBADF || errno == ENOTSOCK || errno == EFAULT || errno == EINVAL)) break;
      /* Timeouts (SO_RCVTIMEO), signals, close()'s wake-up, one datagram's ICMP error: the loop
       * condition decides. */
      continue;
    }
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) break;
    uint32_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += s->in[i].msg_len;
    batch_t *b = malloc(sizeof(batch_t) + bytes);
    if (!b) continue; /* no memory: these datagrams are lost, as the kernel drops on a full buffer */
    b->s = s;
    b->n = (uint32_t)n;
    b->bytes = bytes;
    uint32_t off = 0;
    for (int i = 0; i < n; i++) {
      struct msghdr *h = &s->in[i].msg_hdr;
      uint32_t len = s->in[i].msg_len;
      uint32_t ifindex = 0, dst = 0, flags = 0;
      for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
          struct in_pktinfo pi;
          memcpy(&pi, CMSG_DATA(cm), sizeof pi);
          ifindex = (uint32_t)pi.ipi_ifindex;
          dst = ntohl(pi.ipi_addr.s_addr);
        }
      }
      if (h->msg_flags & MSG_TRUNC) {
        flags |= FLAG_TRUNC;
        BUMP(s->c.truncated, 1);
      }
      memcpy(b->data + off, s->buf[i], len);
      uint32_t *m = &b->meta[i * META];
      m[0] = off;
      m[1] = len;
      m[2] = ntohl(s->addr[i].sin_addr.s_addr);
      m[3] = ntohs(s->addr[i].sin_port);
      m[4] = ifindex;
      m[5] = dst;
      m[6] = flags;
      m[7] = 0;
      off += len;
    }
    BUMP(s->c.batches, 1);
    BUMP(s->c.datagrams, (uint64_t)n);
    pthread_mutex_lock(&s->mu);
    s->in_flight++;
    pthread_mutex_unlock(&s->mu);
    /* The tsfn's queue holds more than IN_FLIGHT, so this does not fail for lack of room; it
     * fails only once the function is closing. */
    if (napi_call_threadsafe_function(s->tsfn, b, napi_tsfn_nonblocking) != napi_ok) {
      free(b);
      batch_done(s);
    }
  }
  return NULL;
}

/* ---- JS side ---- */

/* On the JS thread: onBatch(data: Buffer, meta: Uint32Array, n) once per batch read. */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  batch_t *b = data;
  server_t *s = b->s;
  if (env != NULL && cb != NULL) {
    napi_value buf, ab, meta, count, undef, argv[3];
    void *copy = NULL, *words = NULL;
    size_t mbytes = (size_t)b->n * META * sizeof(uint32_t);
    if (napi_create_buffer_copy(env, b->bytes, b->data, &copy, &buf) == napi_ok &&
        napi_create_arraybuffer(env, mbytes, &words, &ab) == napi_ok &&
        napi_create_typedarray(env, napi_uint32_array, (size_t)b->n * META, ab, 0, &meta) ==
            napi_ok) {
      memcpy(words, b->meta, mbytes);
      napi_create_uint32(env, b->n, &count);
      napi_get_undefined(env, &undef);
      argv[0] = buf;
      argv[1] = meta;
      argv[2] = count;
      /* An exception thrown by onBatch surfaces as Node's uncaught exception, as in any
       * callback. */
      napi_call_function(env, undef, cb, 3, argv, NULL);
    }
  }
  free(b);
  batch_done(s);
}

static void stop_server(server_t *s) {
  if (s->closed) return;
  s->closed = 1;
  pthread_mutex_lock(&s->mu);
  __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  /* Wakes the thread blocked in recvmmsg: on Linux a shutdown wakes an unconnected UDP socket's
   * readers too. SO_RCVTIMEO bounds the wait should it not. */
  shutdown(s->fd, SHUT_RDWR);
  if (s->started) pthread_join(s->thread, NULL);
  s->started = 0;
  close(s->fd);
  s->fd = -1;
  /* Batches still queued are delivered (or dropped, env NULL) and freed by call_js. */
  if (s->tsfn) napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
}

static void unref(server_t *s) {
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

static void finalize_tsfn(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  unref(data);
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  stop_server(data);
  unref(data);
}

/* open(host, port, recvBufferBytes, onBatch) -> handle */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, ADDON_NAME ".open(host, port, recvBufferBytes, cb)");
    return NULL;
  }
  char host[INET_ADDRSTRLEN + 1];
  size_t hl = 0;
  uint32_t port = 0, rcv = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hl));
  CHECK(napi_get_value_uint32(env, argv[1], &port));
  CHECK(napi_get_value_uint32(env, argv[2], &rcv));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    napi_throw_range_error(env, NULL, ADDON_NAME ".open: host must be an IPv4 address");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  /* As dgram's reuseAddr: a restarting sidecar and its successor may overlap. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
  setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
  if (rcv > 0) {
    int v = (int)rcv;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
  }
  /* A bound on how long close() may wait for the thread if shutdown did not wake it. */
  struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  server_t *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, "calloc", ENOMEM);
  }
  s->fd = fd;
  s->refs = 2;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  napi_value name;
  napi_create_string_utf8(env, ADDON_NAME, NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[3], NULL, name, 4 * IN_FLIGHT, 1, s, finalize_tsfn,
                                      NULL, call_js, &s->tsfn) != napi_ok) {
    close(fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    napi_throw_type_error(env, NULL, ADDON_NAME ".open: onBatch must be a function");
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, s, finalize_handle, NULL, &handle) != napi_ok) {
    s->closed = 1;
    s->refs = 1;
    close(fd);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
    napi_throw_error(env, NULL, ADDON_NAME ".open: napi_create_external failed");
    return NULL;
  }
  if (pthread_create(&s->thread, NULL, serve, s) != 0) {
    stop_server(s);
    return throw_errno(env, "pthread_create", EAGAIN);
  }
  s->started = 1;
  return handle;
}

/* port(handle) -> the bound port (port 0 resolved) */
static napi_value js_port(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  napi_value out;
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (s->closed || getsockname(s->fd, (struct sockaddr *)&a, &len) < 0) {
    return throw_errno(env, "getsockname", s->closed ? EBADF : errno);
  }
  CHECK(napi_create_uint32(env, ntohs(a.sin_port), &out));
  return out;
}

/* send(handle, replies: Buffer[], meta: Uint32Array, n) -> how many the kernel took */
static napi_value js_send(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(4);
  napi_value out;
  napi_typedarray_type type;
  size_t words = 0, aoff = 0;
  void *mdata = NULL;
  napi_value ab;
  uint32_t n = 0, have = 0;
  CHECK(napi_get_typedarray_info(env, argv[2], &type, &words, &mdata, &ab, &aoff));
  CHECK(napi_get_value_uint32(env, argv[3], &n));
  CHECK(napi_get_array_length(env, argv[1], &have));
  if (type != napi_uint32_array || (size_t)n * SEND_META > words || n > have) {
    napi_throw_range_error(env, NULL, ADDON_NAME ".send: meta or replies shorter than n");
    return NULL;
  }
  const uint32_t *meta = mdata;
  struct mmsghdr out_msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in to[BATCH];
  uint8_t ctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))] __attribute__((aligned(8)));
  uint32_t ok = 0;
  for (uint32_t start = 0; start < n && !s->closed; start += BATCH) {
    uint32_t k = n - start < BATCH ? n - start : BATCH;
    for (uint32_t j = 0; j < k; j++) {
      const uint32_t *m = &meta[(start + j) * SEND_META];
      napi_value el;
      void *data = NULL;
      size_t len = 0;
      CHECK(napi_get_element(env, argv[1], start + j, &el));
      CHECK(napi_get_buffer_info(env, el, &data, &len));
      iov[j].iov_base = data;
      iov[j].iov_len = len;
      memset(&to[j], 0, sizeof to[j]);
      to[j].sin_family = AF_INET;
      to[j].sin_addr.s_addr = htonl(m[0]);
      to[j].sin_port = htons((uint16_t)m[1]);
      memset(&out_msgs[j], 0, sizeof out_msgs[j]);
      struct msghdr *h = &out_msgs[j].msg_hdr;
      h->msg_name = &to[j];
      h->msg_namelen = sizeof to[j];
      h->msg_iov = &iov[j];
      h->msg_iovlen = 1;
      if (m[2] != 0) {
        /* The reply's source address (RFC 2131 §4.1: the server identifier): the kernel routes a
         * limited broadcast out of the interface that owns it. */
        memset(ctl[j], 0, sizeof ctl[j]);
        h->msg_control = ctl[j];
        h->msg_controllen = sizeof ctl[j];
        struct cmsghdr *cm = CMSG_FIRSTHDR(h);
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        pi.ipi_spec_dst.s_addr = htonl(m[2]);
        memcpy(CMSG_DATA(cm), &pi, sizeof pi);
      }
    }
    /* Each pass sends at least one message or skips the one that failed: at most k passes. */
    uint32_t sent = 0;
    while (sent < k) {
      int r = sendmmsg(s->fd, out_msgs + sent, k - sent, MSG_DONTWAIT);
      if (r <= 0) {
        BUMP(s->c.send_errors, 1);
        sent++;
      } else {
        sent += (uint32_t)r;
        ok += (uint32_t)r;
      }
    }
  }
  BUMP(s->c.sent, ok);
  CHECK(napi_create_uint32(env, ok, &out));
  return out;
}

/* stats(handle) -> counts since open */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  napi_value out;
  CHECK(napi_create_object(env, &out));
  set_num(env, out, "batches", (double)LOAD(s->c.batches));
  set_num(env, out, "datagrams", (double)LOAD(s->c.datagrams));
  set_num(env, out, "truncated", (double)LOAD(s->c.truncated));
  set_num(env, out, "sent", (double)LOAD(s->c.sent));
  set_num(env, out, "sendErrors", (double)LOAD(s->c.send_errors));
  return out;
}

/* close(handle): stops the thread and closes the socket (the handle stays valid, inert) */
static napi_value js_close(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  stop_server(s);
  return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"port", NULL, js_port, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value v;
  napi_create_uint32(env, META, &v);
  napi_set_named_property(env, exports, "metaWords", v);
  napi_create_uint32(env, SEND_META, &v);
  napi_set_named_property(env, exports, "sendMetaWords", v);
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    return NULL;
  }
  return exports;
}
