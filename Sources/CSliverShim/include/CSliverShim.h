// One-line wrappers for kernel interfaces that Swift cannot call directly: variadic functions,
// function-like macros and _GNU_SOURCE-only declarations. Every function is prefixed `sliver_`
// and returns -1 with errno set on failure, like the syscall it wraps.
#ifndef CSLIVERSHIM_H
#define CSLIVERSHIM_H
#include <sys/types.h>
#include <stdint.h>
// epoll, signalfd and timerfd are not part of Swift's Glibc module; re-exported from here.
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

int sliver_pidfd_open(pid_t pid);
int sliver_pidfd_send_signal(int pidfd, int sig);
/// waitid(P_PIDFD, pidfd, ..., WEXITED|WNOHANG). Returns 1 and fills status when the child ended,
/// 0 when it still runs, -1 on error. status: exit code, or 128+signal.
int sliver_pidfd_wait(int pidfd, int *status, int nohang);

/// SCMP_ACT_ERRNO(err): the action value libseccomp defines as a macro.
uint32_t sliver_scmp_act_errno(int err);

/// sendmsg with up to `nfds` descriptors attached as SCM_RIGHTS.
ssize_t sliver_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/// recvmsg that also collects up to `maxfds` SCM_RIGHTS descriptors (received O_CLOEXEC).
ssize_t sliver_recv_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);
/// SO_PEERCRED of a connected Unix socket.
int sliver_peer_creds(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

/// signalfd for the given signals after blocking them in the calling thread (and, because it is
/// called before any other thread exists, in every thread created later).
int sliver_block_signals_fd(const int *signals, int n);

/// pipe2(fds, O_CLOEXEC) and memfd_create(name, MFD_CLOEXEC): _GNU_SOURCE-only in glibc's headers.
int sliver_pipe_cloexec(int fds[2]);
int sliver_memfd(const char *name);

/// accept4(sock, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK).
int sliver_accept(int sock);

/// lckpwdf()/ulckpwdf(): the lock every passwd/shadow writer (useradd, passwd, ...) takes.
int sliver_lock_passwd(void);
int sliver_unlock_passwd(void);

// btrfs subvolumes/qgroups and project quotas (SliverResources' disk-quota backends).
#include "sliver_quota.h"
#endif
