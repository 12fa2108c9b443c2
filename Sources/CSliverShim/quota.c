#define _GNU_SOURCE
#include "sliver_quota.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fs.h>
#include <linux/quota.h>

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif

int sliver_fs_magic(int fd, int64_t *magic) {
    struct statfs st;
    if (fstatfs(fd, &st) < 0) return -1;
    *magic = (int64_t)(uint32_t)st.f_type;
    return 0;
}

static int vol_args(struct btrfs_ioctl_vol_args *args, const char *name) {
    memset(args, 0, sizeof *args);
    size_t n = strlen(name);
    if (n == 0 || n > BTRFS_PATH_NAME_MAX || strchr(name, '/')) { errno = EINVAL; return -1; }
    memcpy(args->name, name, n);
    return 0;
}

int sliver_btrfs_subvol_create(int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args args;
    if (vol_args(&args, name) < 0) return -1;
    return ioctl(dirfd, BTRFS_IOC_SUBVOL_CREATE, &args);
}

int sliver_btrfs_subvol_destroy(int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args args;
    if (vol_args(&args, name) < 0) return -1;
    return ioctl(dirfd, BTRFS_IOC_SNAP_DESTROY, &args);
}

int sliver_btrfs_subvol_id(int fd, uint64_t *id) {
    struct btrfs_ioctl_ino_lookup_args args;
    memset(&args, 0, sizeof args);
    args.treeid = 0;
    args.objectid = BTRFS_FIRST_FREE_OBJECTID;
    if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) < 0) return -1;
    *id = args.treeid;
    return 0;
}

int sliver_btrfs_qgroup_limit(int fd, uint64_t max_referenced) {
    struct btrfs_ioctl_qgroup_limit_args args;
    memset(&args, 0, sizeof args);
    args.qgroupid = 0;  // 0 = the level-0 qgroup of the subvolume fd is in
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = max_referenced;  // (u64)-1 is the kernel's "clear this limit"
    return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &args);
}

int sliver_btrfs_qgroup_destroy(int fd, uint64_t qgroupid) {
    struct btrfs_ioctl_qgroup_create_args args;
    memset(&args, 0, sizeof args);
    args.create = 0;
    args.qgroupid = qgroupid;
    return ioctl(fd, BTRFS_IOC_QGROUP_CREATE, &args);
}

int sliver_btrfs_fsid(int fd, char out[37]) {
    struct btrfs_ioctl_fs_info_args args;
    memset(&args, 0, sizeof args);
    if (ioctl(fd, BTRFS_IOC_FS_INFO, &args) < 0) return -1;
    const unsigned char *u = args.fsid;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

int sliver_fs_get_project(int fd, uint32_t *projid) {
    struct fsxattr attr;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) < 0) return -1;
    *projid = attr.fsx_projid;
    return 0;
}

int sliver_fs_set_project(int fd, uint32_t projid) {
    struct fsxattr attr;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) < 0) return -1;
    attr.fsx_projid = projid;
    attr.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    return ioctl(fd, FS_IOC_FSSETXATTR, &attr);
}

static long quotactl_fd(int fd, unsigned cmd, uint32_t id, void *addr) {
    return syscall(SYS_quotactl_fd, fd, QCMD(cmd, PRJQUOTA), id, addr);
}

int sliver_quota_project_enabled(int fd) {
    struct if_dqinfo info;
    memset(&info, 0, sizeof info);
    return (int)quotactl_fd(fd, Q_GETINFO, 0, &info);
}

int sliver_quota_project_set(int fd, uint32_t projid, uint64_t block_hard_kib, uint64_t inode_hard) {
    struct if_dqblk q;
    memset(&q, 0, sizeof q);
    // dqb_*limit are in QIF_DQBLKSIZE (1 KiB) blocks; 0 means no limit.
    q.dqb_bhardlimit = block_hard_kib;
    q.dqb_bsoftlimit = block_hard_kib;
    q.dqb_ihardlimit = inode_hard;
    q.dqb_isoftlimit = inode_hard;
    q.dqb_valid = QIF_LIMITS;
    return (int)quotactl_fd(fd, Q_SETQUOTA, projid, &q);
}

int sliver_quota_project_get(int fd, uint32_t projid, uint64_t *space_bytes, uint64_t *inodes,
                             uint64_t *block_hard_kib, uint64_t *inode_hard) {
    struct if_dqblk q;
    memset(&q, 0, sizeof q);
    if (quotactl_fd(fd, Q_GETQUOTA, projid, &q) < 0) return -1;
    *space_bytes = q.dqb_curspace;
    *inodes = q.dqb_curinodes;
    *block_hard_kib = q.dqb_bhardlimit;
    *inode_hard = q.dqb_ihardlimit;
    return 0;
}
