/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The host side of the networks in the host settings: bridges, WireGuard
 * hubs, and what each VM gets on them (a tap, a peer, its wg0.conf).
 *
 * The daemon brings every network up at start: a missing bridge is
 * created, an existing one adopted; a hub is a kernel WireGuard link where
 * the kernel has the module, else a supervised wireguard-go. At exit it
 * removes only what it created. With --keep-running it leaves everything
 * for the next daemon and says so in <run_dir>/net.json, which that daemon
 * reads to adopt the hubs and to know which bridges are vmd's.
 *
 * "vmd run" uses the same code for bridges only: VMs on a hub need the
 * daemon, which owns the hub's peer list. */

#include "defset.h"
#include "loop.h"

struct hostnet;

/* daemon: hubs too, and net.json. On failure everything done is undone. */
int hostnet_up(struct loop *l, const struct host_config *host, bool daemon, struct hostnet **ret);
/* keep: leave links and hubs running for the next daemon (daemon only). */
void hostnet_down(struct hostnet *n, bool keep);

/* A tap for def (which has a network) on its bridge, with queues queues;
 * the fds go to fds. The tap dies with the last of them. */
int hostnet_tap(struct hostnet *n, const struct vm_def *def, unsigned queues, int *fds);

/* For def (which has wireguard), whose key directory keyfd holds its
 * private key: writes wg0.conf there and adds the VM to its hub as a peer
 * (AllowedIPs = its address). Errors are logged. */
int hostnet_wg_join(struct hostnet *n, const struct vm_def *def, int keyfd);

/* Brings each hub's peers in line with set: a peer whose key belongs to
 * no VM of set on that hub (with that address) is removed. Called after
 * every load of the definitions. */
void hostnet_sync(struct hostnet *n, const struct defset *set);
