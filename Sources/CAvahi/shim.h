// The libavahi-client API that ParleyAvahi uses. Only ParleyAvahi imports this module, and it
// imports it `internal`: no Avahi type appears in Parley's public API.
// Headers come from Debian's libavahi-client-dev (pkg-config: avahi-client).
#ifndef PARLEY_CAVAHI_SHIM_H
#define PARLEY_CAVAHI_SHIM_H

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/address.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/thread-watch.h>
#include <avahi-common/timeval.h>
#include <avahi-common/watch.h>
#include <net/if.h>

#endif
