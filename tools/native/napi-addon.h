/*
 * What the sidecars' native UDP loops (dns-sidecar/native/udp.c, ADR 0020, and
 * dhcp-sidecar/native/udp4.c, ADR 0023) share: Node-API error handling and the preamble of a method
 * that takes a server handle. Each addon defines ADDON_NAME (its module name, the prefix of its
 * error messages) and its server_t before including this.
 */
#ifndef CROWBAR_NAPI_ADDON_H
#define CROWBAR_NAPI_ADDON_H

#ifndef ADDON_NAME
#error "define ADDON_NAME before including napi-addon.h"
#endif

#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>

/* Counters are written by one thread and read by JS: relaxed atomics, no lock. */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BUMP(x, n) __atomic_store_n(&(x), LOAD(x) + (n), __ATOMIC_RELAXED)

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      napi_throw_error(env, "ECROWBARUDP", ADDON_NAME ": " #call " failed");        \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static inline napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value m, e, code;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &e);
  /* The code is what dgram's errors carry (EADDRINUSE, ...), for the same handling. */
  const char *name = err == EADDRINUSE      ? "EADDRINUSE"
                     : err == EACCES        ? "EACCES"
                     : err == EADDRNOTAVAIL ? "EADDRNOTAVAIL"
                                            : "ESYSCALL";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, e, "code", code);
  napi_throw(env, e);
  return NULL;
}

static inline void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

/* The server behind a handle that open() returned; throws a TypeError for anything else. */
static inline void *get_handle(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, ADDON_NAME ": not a server handle");
    return NULL;
  }
  return p;
}

/*
 * A method's preamble: its n arguments in argv (a server handle first) and the server in s; too
 * few arguments or a wrong handle throw a TypeError and return.
 */
#define HANDLE_ARGS(n)                                                              \
  size_t argc = (n);                                                                \
  napi_value argv[(n)];                                                             \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));                      \
  if (argc < (n)) {                                                                 \
    napi_throw_type_error(env, NULL, ADDON_NAME ": expected " #n " arguments");     \
    return NULL;                                                                    \
  }                                                                                 \
  server_t *s = get_handle(env, argv[0]);                                           \
  if (!s) return NULL

#endif
