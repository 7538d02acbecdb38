/*
 * crowbar_udp: the DNS sidecar's UDP socket loop in C (ADR 0020).
 *
 * Node's dgram reads and writes one datagram per system call and calls into JS once per datagram;
 * that alone costs about as much CPU as BIND spends on a whole query. Here N threads share one
 * socket and move up to BATCH datagrams per recvmmsg/sendmmsg. A datagram whose bytes after the
 * ID are a key of the answer table is answered in C (the cached response with the query's ID); any
 * other goes up to JS in one call per batch, where the handler (dns-packet) answers it, sends the
 * answer through send() and, when it may be cached, stores it with put(). The C side never parses
 * DNS: it compares bytes, so a malformed datagram is only ever a miss that JS counts and drops.
 *
 * The table has two generations bounded in bytes, as answer-cache.ts: a full young generation
 * becomes the old one, a hit in the old one is copied into the young one. clear() empties both
 * when the zones change. One mutex guards the table; a thread takes it once per batch.
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
#include <time.h>
#include <unistd.h>

#define ADDON_NAME "crowbar_udp"
#include "napi-addon.h"

#define BATCH 64
/* The largest UDP payload is 65507 bytes: a slot holds any datagram whole. */
#define SLOT 65536
#define HEADER 12
#define MAX_TALLIES 1024
#define MAX_BOUNDS 32
#define MAX_THREADS 64
#define HASH_BUCKETS (1u << 16)
/* Bookkeeping counted per entry besides key and response, as answer-cache.ts counts it. */
#define ENTRY_OVERHEAD 96
/* Miss batches, and their bytes, waiting for the JS thread; past either, misses are dropped (and
 * counted), so a flood of large one-off datagrams cannot grow the queue past MISS_BYTES. */
#define MISS_QUEUE 1024
#define MISS_BYTES (8u << 20)

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  uint32_t klen, rlen, tally;
  uint8_t data[]; /* key (klen bytes), then response (rlen bytes) */
} entry_t;

typedef struct {
  entry_t **buckets;
  size_t bytes, count;
} gen_t;

/* One thread's counters: written by that thread only, summed by stats() (relaxed atomics). */
typedef struct {
  uint64_t tallies[MAX_TALLIES];
  uint64_t hist[MAX_BOUNDS + 1];
  uint64_t sum_ns, count, hits, misses, queue_full, send_errors, truncated, batches;
} __attribute__((aligned(64))) counters_t;

struct server;

typedef struct {
  struct server *s;
  pthread_t thread;
  int started;
  uint8_t *buf; /* BATCH slots of SLOT bytes */
  struct mmsghdr in[BATCH], out[BATCH];
  struct iovec iov[BATCH], oiov[BATCH];
  struct sockaddr_storage addr[BATCH];
  int32_t hit[BATCH]; /* response length of a hit, -1 for a miss */
  counters_t c;
} worker_t;

/* Bytes of misses queued for JS: shared by the threads and call_js, freed with the tsfn (queued
 * batches may still be delivered after the server is gone). */
typedef struct {
  size_t bytes;
} miss_queue_t;

typedef struct server {
  int fd, nthreads, stopping, closed;
  miss_queue_t *queue;
  worker_t *workers;
  pthread_mutex_t mu;
  gen_t young, old;
  size_t gen_budget;
  int cache_on;
  double bounds[MAX_BOUNDS];
  int nbounds;
  napi_threadsafe_function tsfn;
} server_t;

typedef struct {
  uint32_t len;
  struct sockaddr_storage addr;
  uint8_t data[];
} miss_t;

typedef struct {
  int n;
  size_t bytes;
  miss_t *m[BATCH];
} miss_batch_t;

static uint64_t hash_key(const uint8_t *k, uint32_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (uint32_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ull;
  return h;
}

static int gen_init(gen_t *g) {
  g->buckets = calloc(HASH_BUCKETS, sizeof(entry_t *));
  g->bytes = g->count = 0;
  return g->buckets != NULL;
}

static void gen_free(gen_t *g) {
  if (!g->buckets) return;
  for (uint32_t i = 0; i < HASH_BUCKETS; i++) {
    entry_t *e = g->buckets[i];
    while (e) {
      entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(g->buckets);
  g->buckets = NULL;
  g->bytes = g->count = 0;
}

static entry_t *gen_find(const gen_t *g, uint64_t h, const uint8_t *k, uint32_t klen) {
  for (entry_t *e = g->buckets[h & (HASH_BUCKETS - 1)]; e; e = e->next) {
    if (e->hash == h && e->klen == klen && memcmp(e->data, k, klen) == 0) return e;
  }
  return NULL;
}

static size_t entry_bytes(const entry_t *e) {
  return (size_t)e->klen + e->rlen + ENTRY_OVERHEAD;
}

/* Links e into the young generation, turning that old first when e does not fit; holds mu. An
 * entry is in one generation only, so dropping the old one never frees what is being linked. */
static int young_link(server_t *s, entry_t *e) {
  size_t bytes = entry_bytes(e);
  if (s->young.bytes + bytes > s->gen_budget) {
    gen_t fresh;
    if (!gen_init(&fresh)) return 0;
    gen_free(&s->old);
    s->old = s->young;
    s->young = fresh;
  }
  uint32_t b = e->hash & (HASH_BUCKETS - 1);
  e->next = s->young.buckets[b];
  s->young.buckets[b] = e;
  s->young.bytes += bytes;
  s->young.count++;
  return 1;
}

/* Stores a response for a key unless the young generation has it; the caller holds mu. */
static void table_put(server_t *s, uint64_t h, const uint8_t *k, uint32_t klen, const uint8_t *r,
                      uint32_t rlen, uint32_t tally) {
  if ((size_t)klen + rlen + ENTRY_OVERHEAD > s->gen_budget) return;
  if (gen_find(&s->young, h, k, klen)) return;
  entry_t *e = malloc(sizeof(entry_t) + klen + rlen);
  if (!e) return;
  e->hash = h;
  e->klen = klen;
  e->rlen = rlen;
  e->tally = tally;
  memcpy(e->data, k, klen);
  memcpy(e->data + klen, r, rlen);
  if (!young_link(s, e)) free(e);
}

/* The entry for this key, from the young generation or moved there from the old; holds mu. */
static entry_t *table_get(server_t *s, const uint8_t *k, uint32_t klen) {
  uint64_t h = hash_key(k, klen);
  entry_t *e = gen_find(&s->young, h, k, klen);
  if (e) return e;
  /* The chain walk is bounded by the generation's entry count. */
  for (entry_t **pp = &s->old.buckets[h & (HASH_BUCKETS - 1)]; (e = *pp) != NULL; pp = &e->next) {
    if (e->hash != h || e->klen != klen || memcmp(e->data, k, klen) != 0) continue;
    *pp = e->next;
    s->old.bytes -= entry_bytes(e);
    s->old.count--;
    if (young_link(s, e)) return e;
    /* No memory for a fresh generation: back into the old one, answered from there. */
    e->next = *pp;
    *pp = e;
    s->old.bytes += entry_bytes(e);
    s->old.count++;
    return e;
  }
  return NULL;
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void send_batch(server_t *s, worker_t *w, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (w->hit[i] < 0) continue;
    w->oiov[k].iov_base = w->buf + (size_t)i * SLOT;
    w->oiov[k].iov_len = (size_t)w->hit[i];
    memset(&w->out[k], 0, sizeof(w->out[k]));
    w->out[k].msg_hdr.msg_name = &w->addr[i];
    w->out[k].msg_hdr.msg_namelen = w->in[i].msg_hdr.msg_namelen;
    w->out[k].msg_hdr.msg_iov = &w->oiov[k];
    w->out[k].msg_hdr.msg_iovlen = 1;
    k++;
  }
  /* Each pass sends at least one message or skips the one that failed: at most k passes. */
  int sent = 0;
  while (sent < k) {
    int r = sendmmsg(s->fd, w->out + sent, (unsigned)(k - sent), MSG_DONTWAIT);
    if (r <= 0) {
      BUMP(w->c.send_errors, 1);
      sent++;
    } else {
      sent += r;
    }
  }
}

static void *serve(void *arg) {
  worker_t *w = arg;
  server_t *s = w->s;
  for (int i = 0; i < BATCH; i++) {
    w->iov[i].iov_base = w->buf + (size_t)i * SLOT;
    w->iov[i].iov_len = SLOT;
    memset(&w->in[i], 0, sizeof(w->in[i]));
    w->in[i].msg_hdr.msg_name = &w->addr[i];
    w->in[i].msg_hdr.msg_iov = &w->iov[i];
    w->in[i].msg_hdr.msg_iovlen = 1;
  }
  while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
    for (int i = 0; i < BATCH; i++) {
      w->in[i].msg_hdr.msg_namelen = sizeof(w->addr[i]);
      w->in[i].msg_hdr.msg_flags = 0;
    }
    /* Blocks for the first datagram, then takes what else is queued: one call per batch. A
     * blocked receive is exclusive (one thread woken per datagram, unlike poll). */
    int n = recvmmsg(s->fd, w->in, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) {
      /* The socket is gone: nothing more to read. */
      if (n < 0 && (errno == EBADF || errno == ENOTSOCK || errno == EFAULT || errno == EINVAL)) break;
      /* Timeouts (SO_RCVTIMEO), signals, the wake-up of close() (0 after shutdown) and errors of
       * one datagram (an ICMP error for an earlier send, ENOMEM): the loop condition decides. */
      continue;
    }
    /* After close()'s shutdown a receive returns an empty "datagram" with a stale address. */
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) break;
    uint64_t t0 = now_ns();
    BUMP(w->c.batches, 1);
    int hits = 0, misses = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) {
      w->hit[i] = -1;
      uint32_t len = w->in[i].msg_len;
      uint8_t *p = w->buf + (size_t)i * SLOT;
      if (w->in[i].msg_hdr.msg_flags & MSG_TRUNC) {
        w->hit[i] = -2; /* cannot happen with SLOT > max payload; counted, never answered */
        continue;
      }
      if (!s->cache_on || len <= HEADER) {
        misses++;
        continue;
      }
      entry_t *e = table_get(s, p + 2, len - 2);
      if (!e) {
        misses++;
        continue;
      }
      uint8_t id0 = p[0], id1 = p[1];
      memcpy(p, e->data + e->klen, e->rlen);
      p[0] = id0;
      p[1] = id1;
      w->hit[i] = (int32_t)e->rlen;
      BUMP(w->c.tallies[e->tally], 1);
      hits++;
    }
    pthread_mutex_unlock(&s->mu);
    miss_batch_t *mb = NULL;
    if (misses > 0) {
      mb = malloc(sizeof(*mb));
      if (mb) {
        mb->n = 0;
        mb->bytes = sizeof(*mb);
      }
      for (int i = 0; i < n && mb; i++) {
        if (w->hit[i] != -1) continue;
        uint32_t len = w->in[i].msg_len;
        miss_t *m = malloc(sizeof(miss_t) + len);
        if (!m) continue;
        m->len = len;
        mb->bytes += sizeof(miss_t) + len;
        memcpy(&m->addr, &w->addr[i], sizeof(m->addr));
        memcpy(m->data, w->buf + (size_t)i * SLOT, len);
        mb->m[mb->n++] = m;
      }
    }
    for (int i = 0; i < n; i++) {
      if (w->hit[i] == -2) {
        BUMP(w->c.truncated, 1);
        w->hit[i] = -1;
      }
    }
    if (hits > 0) {
      /* Counted before the answers leave, so that a client that has its answer sees it counted
       * (the JS path too records before it sends); the time is from the read to answers ready. */
      uint64_t dt = now_ns() - t0;
      double sec = (double)dt / 1e9;
      int b = 0;
      while (b < s->nbounds && sec > s->bounds[b]) b++;
      BUMP(w->c.hist[b], (uint64_t)hits);
      BUMP(w->c.sum_ns, dt * (uint64_t)hits);
      BUMP(w->c.count, (uint64_t)hits);
      BUMP(w->c.hits, (uint64_t)hits);
      send_batch(s, w, n);
    }
    if (misses > 0) {
      BUMP(w->c.misses, (uint64_t)misses);
      int queued = 0;
      if (mb) {
        size_t total = __atomic_add_fetch(&s->queue->bytes, mb->bytes, __ATOMIC_RELAXED);
        queued = total <= MISS_BYTES &&
                 napi_call_threadsafe_function(s->tsfn, mb, napi_tsfn_nonblocking) == napi_ok;
        if (!queued) __atomic_sub_fetch(&s->queue->bytes, mb->bytes, __ATOMIC_RELAXED);
      }
      if (!queued) {
        BUMP(w->c.queue_full, (uint64_t)misses);
        if (mb) {
          for (int i = 0; i < mb->n; i++) free(mb->m[i]);
          free(mb);
        }
      }
    }
  }
  return NULL;
}

/* ---- JS side ---- */

static void addr_string(const struct sockaddr_storage *a, char *out, size_t n, uint32_t *port) {
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const void *)a;
    inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)n);
    *port = ntohs(s6->sin6_port);
  } else {
    const struct sockaddr_in *s4 = (const void *)a;
    inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t)n);
    *port = ntohs(s4->sin_port);
  }
}

/* On the JS thread: one call of onMiss(messages, addresses, ports) per batch of misses. */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  miss_queue_t *queue = context;
  miss_batch_t *mb = data;
  __atomic_sub_fetch(&queue->bytes, mb->bytes, __ATOMIC_RELAXED);
  if (env != NULL && cb != NULL) {
    napi_value msgs, addrs, ports, undef, argv[3];
    napi_create_array_with_length(env, (size_t)mb->n, &msgs);
    napi_create_array_with_length(env, (size_t)mb->n, &addrs);
    napi_create_array_with_length(env, (size_t)mb->n, &ports);
    for (int i = 0; i < mb->n; i++) {
      miss_t *m = mb->m[i];
      napi_value buf, str, port;
      void *copy;
      char text[INET6_ADDRSTRLEN];
      uint32_t p = 0;
      napi_create_buffer_copy(env, m->len, m->data, &copy, &buf);
      addr_string(&m->addr, text, sizeof text, &p);
      napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &str);
      napi_create_uint32(env, p, &port);
      napi_set_element(env, msgs, (uint32_t)i, buf);
      napi_set_element(env, addrs, (uint32_t)i, str);
      napi_set_element(env, ports, (uint32_t)i, port);
    }
    argv[0] = msgs;
    argv[1] = addrs;
    argv[2] = ports;
    napi_get_undefined(env, &undef);
    /* An exception thrown by onMiss surfaces as Node's uncaught exception, as in any callback. */
    napi_call_function(env, undef, cb, 3, argv, NULL);
  }
  for (int i = 0; i < mb->n; i++) free(mb->m[i]);
  free(mb);
}

static void free_queue(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void stop_server(server_t *s) {
  if (s->closed) return;
  s->closed = 1;
  __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
  /* Wakes the threads blocked in recvmmsg: on Linux a shutdown marks even an unconnected UDP
   * socket and wakes its readers (it also returns ENOTCONN, which is expected). SO_RCVTIMEO
   * bounds the wait should it not. */
  shutdown(s->fd, SHUT_RDWR);
  for (int i = 0; s->workers && i < s->nthreads; i++) {
    if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
  }
  close(s->fd);
  s->fd = -1;
  if (s->tsfn) napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
}

static void finalize_server(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  server_t *s = data;
  stop_server(s);
  for (int i = 0; s->workers && i < s->nthreads; i++) free(s->workers[i].buf);
  free(s->workers);
  gen_free(&s->young);
  gen_free(&s->old);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static int parse_addr(const char *host, uint32_t port, struct sockaddr_storage *a, socklen_t *len) {
  memset(a, 0, sizeof *a);
  struct sockaddr_in *s4 = (void *)a;
  struct sockaddr_in6 *s6 = (void *)a;
  if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return AF_INET;
  }
  if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return AF_INET6;
  }
  return -1;
}

/* open(host, port, threads, cacheBytes, bounds: number[], onMiss) -> handle */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, ADDON_NAME ".open(host, port, threads, bytes, bounds, cb)");
    return NULL;
  }
  char host[INET6_ADDRSTRLEN + 1];
  size_t hl = 0;
  uint32_t port = 0, threads = 0;
  double bytes = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hl));
  CHECK(napi_get_value_uint32(env, argv[1], &port));
  CHECK(napi_get_value_uint32(env, argv[2], &threads));
  CHECK(napi_get_value_double(env, argv[3], &bytes));
  uint32_t nb = 0;
  CHECK(napi_get_array_length(env, argv[4], &nb));
  if (port > 65535 || threads < 1 || threads > MAX_THREADS || nb > MAX_BOUNDS || bytes < 0) {
    napi_throw_range_error(env, NULL, ADDON_NAME ".open: port, threads or bounds out of range");
    return NULL;
  }
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  int family = parse_addr(host, port, &sa, &salen);
  if (family < 0) {
    napi_throw_type_error(env, NULL, ADDON_NAME ".open: host must be an IP address");
    return NULL;
  }
  server_t *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "calloc", ENOMEM);
  s->fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  s->nbounds = (int)nb;
  for (uint32_t i = 0; i < nb; i++) {
    napi_value v;
    napi_get_element(env, argv[4], i, &v);
    napi_get_value_double(env, v, &s->bounds[i]);
  }
  s->gen_budget = (size_t)(bytes / 2);
  s->cache_on = bytes > 0;
  s->nthreads = (int)threads;
  s->workers = calloc(threads, sizeof(worker_t));
  if (!s->workers || !gen_init(&s->young) || !gen_init(&s->old)) {
    finalize_server(env, s, NULL);
    return throw_errno(env, "calloc", ENOMEM);
  }
  s->fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (s->fd < 0) {
    int e = errno;
    finalize_server(env, s, NULL);
    return throw_errno(env, "socket", e);
  }
  /* SO_REUSEPORT as dgram's reusePort: a restarting sidecar and its successor may overlap. */
  setsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6) setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(s->fd, (struct sockaddr *)&sa, salen) < 0) {
    int e = errno;
    finalize_server(env, s, NULL);
    return throw_errno(env, "bind", e);
  }
  /* A bound on how long close() may wait for a thread if shutdown did not wake it. */
  struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
  setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  napi_value name;
  napi_create_string_utf8(env, ADDON_NAME, NAPI_AUTO_LENGTH, &name);
  miss_queue_t *queue = calloc(1, sizeof *queue);
  if (!queue || napi_create_threadsafe_function(env, argv[5], NULL, name, MISS_QUEUE, 1, queue,
                                                free_queue, queue, call_js, &s->tsfn) != napi_ok) {
    free(queue);
    finalize_server(env, s, NULL);
    napi_throw_error(env, NULL, ADDON_NAME ".open: onMiss must be a function");
    return NULL;
  }
  s->queue = queue; /* the tsfn owns it from here (free_queue) */
  for (uint32_t i = 0; i < threads; i++) {
    worker_t *w = &s->workers[i];
    w->s = s;
    w->buf = malloc((size_t)BATCH * SLOT);
    if (!w->buf || pthread_create(&w->thread, NULL, serve, w) != 0) {
      finalize_server(env, s, NULL);
      return throw_errno(env, "pthread_create", EAGAIN);
    }
    w->started = 1;
  }
  napi_value handle;
  if (napi_create_external(env, s, finalize_server, NULL, &handle) != napi_ok) {
    finalize_server(env, s, NULL);
    napi_throw_error(env, NULL, ADDON_NAME ".open: napi_create_external failed");
    return NULL;
  }
  return handle;
}

/* port(handle) -> the bound port (port 0 resolved) */
static napi_value js_port(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  napi_value out;
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (s->closed || getsockname(s->fd, (struct sockaddr *)&a, &len) < 0) {
    return throw_errno(env, "getsockname", s->closed ? EBADF : errno);
  }
  char text[INET6_ADDRSTRLEN];
  uint32_t port = 0;
  addr_string(&a, text, sizeof text, &port);
  CHECK(napi_create_uint32(env, port, &out));
  return out;
}

/* send(handle, buffer, host, port) -> true when the kernel took it */
static napi_value js_send(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(4);
  napi_value out;
  void *data = NULL;
  size_t len = 0;
  char host[INET6_ADDRSTRLEN + 1];
  size_t hl = 0;
  uint32_t port = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_value_string_utf8(env, argv[2], host, sizeof host, &hl));
  CHECK(napi_get_value_uint32(env, argv[3], &port));
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  int ok = !s->closed && port <= 65535 && parse_addr(host, port, &sa, &salen) > 0 &&
           sendto(s->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&sa, salen) == (ssize_t)len;
  CHECK(napi_get_boolean(env, ok, &out));
  return out;
}

/* put(handle, query, response, tally): caches response for the query's bytes after its ID */
static napi_value js_put(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(4);
  void *q = NULL, *r = NULL;
  size_t ql = 0, rl = 0;
  uint32_t tally = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &q, &ql));
  CHECK(napi_get_buffer_info(env, argv[2], &r, &rl));
  CHECK(napi_get_value_uint32(env, argv[3], &tally));
  if (!s->cache_on || ql <= HEADER || rl < HEADER || rl > SLOT || ql > SLOT ||
      tally >= MAX_TALLIES) {
    return NULL;
  }
  const uint8_t *k = (const uint8_t *)q + 2;
  uint32_t klen = (uint32_t)ql - 2;
  pthread_mutex_lock(&s->mu);
  table_put(s, hash_key(k, klen), k, klen, r, (uint32_t)rl, tally);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* clear(handle): drops every cached answer (the zones changed) */
static napi_value js_clear(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  gen_t y, o;
  if (!gen_init(&y)) return throw_errno(env, "calloc", ENOMEM);
  if (!gen_init(&o)) {
    free(y.buckets);
    return throw_errno(env, "calloc", ENOMEM);
  }
  pthread_mutex_lock(&s->mu);
  gen_t oy = s->young, oo = s->old;
  s->young = y;
  s->old = o;
  pthread_mutex_unlock(&s->mu);
  gen_free(&oy);
  gen_free(&oo);
  return NULL;
}

/* stats(handle) -> counters summed over threads (totals since open) */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  HANDLE_ARGS(1);
  napi_value out, tallies, hist;
  double hits = 0, misses = 0, full = 0, serr = 0, trunc = 0, sum = 0, count = 0, batches = 0;
  double h[MAX_BOUNDS + 1] = {0};
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_array(env, &tallies));
  for (int t = 0; t < MAX_TALLIES; t++) {
    double v = 0;
    for (int i = 0; i < s->nthreads; i++) v += (double)LOAD(s->workers[i].c.tallies[t]);
    if (v > 0) {
      napi_value n;
      napi_create_double(env, v, &n);
      napi_set_element(env, tallies, (uint32_t)t, n);
    }
  }
  for (int i = 0; i < s->nthreads; i++) {
    counters_t *c = &s->workers[i].c;
    hits += (double)LOAD(c->hits);
    misses += (double)LOAD(c->misses);
    full += (double)LOAD(c->queue_full);
    serr += (double)LOAD(c->send_errors);
    trunc += (double)LOAD(c->truncated);
    batches += (double)LOAD(c->batches);
    sum += (double)LOAD(c->sum_ns) / 1e9;
    count += (double)LOAD(c->count);
    for (int b = 0; b <= s->nbounds; b++) h[b] += (double)LOAD(c->hist[b]);
  }
  CHECK(napi_create_array_with_length(env, (size_t)s->nbounds + 1, &hist));
  for (int b = 0; b <= s->nbounds; b++) {
    napi_value n;
    napi_create_double(env, h[b], &n);
    napi_set_element(env, hist, (uint32_t)b, n);
  }
  pthread_mutex_lock(&s->mu);
  double entries = (double)(s->young.count + s->old.count);
  pthread_mutex_unlock(&s->mu);
  set_num(env, out, "hits", hits);
  set_num(env, out, "misses", misses);
  set_num(env, out, "queueFull", full);
  set_num(env, out, "sendErrors", serr);
  set_num(env, out, "truncated", trunc);
  set_num(env, out, "batches", batches);
  set_num(env, out, "sum", sum);
  set_num(env, out, "count", count);
  set_num(env, out, "entries", entries);
  napi_set_named_property(env, out, "tallies", tallies);
  napi_set_named_property(env, out, "buckets", hist);
  return out;
}

/* close(handle): stops the threads and closes the socket (the handle stays valid, inert) */
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
      {"put", NULL, js_put, NULL, NULL, NULL, napi_default, NULL},
      {"clear", NULL, js_clear, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value maxTallies;
  napi_create_uint32(env, MAX_TALLIES, &maxTallies);
  napi_set_named_property(env, exports, "maxTallies", maxTallies);
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    return NULL;
  }
  return exports;
}
