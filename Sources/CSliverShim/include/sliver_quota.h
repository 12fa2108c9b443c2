// Disk-quota kernel interfaces (btrfs subvolumes and qgroups, ext4/XFS project quotas) that need
// structs and ioctl numbers from <linux/btrfs.h>, <linux/fs.h> and <linux/quota.h>. Each
// function returns -1 with errno set on failure, like the call it wraps.
#ifndef SLIVER_QUOTA_H
#define SLIVER_QUOTA_H
#include <stdint.h>

/// Filesystem magic of `fd` (fstatfs f_type): BTRFS_SUPER_MAGIC is 0x9123683e.
int sliver_fs_magic(int fd, int64_t *magic);

/// BTRFS_IOC_SUBVOL_CREATE: a new, empty subvolume `name` in the directory `dirfd`.
int sliver_btrfs_subvol_create(int dirfd, const char *name);
/// BTRFS_IOC_SNAP_DESTROY: deletes subvolume `name` of `dirfd` with everything in it (the space
/// is freed by the cleaner thread afterwards).
int sliver_btrfs_subvol_destroy(int dirfd, const char *name);
/// BTRFS_IOC_INO_LOOKUP with treeid 0: the id of the subvolume that holds `fd`.
int sliver_btrfs_subvol_id(int fd, uint64_t *id);
/// BTRFS_IOC_QGROUP_LIMIT on the level-0 qgroup of the subvolume that holds `fd`: limit of
/// referenced bytes; UINT64_MAX removes the limit.
int sliver_btrfs_qgroup_limit(int fd, uint64_t max_referenced);
/// BTRFS_IOC_QGROUP_CREATE with create=0: removes qgroup `qgroupid` (fd: any file of the fs).
int sliver_btrfs_qgroup_destroy(int fd, uint64_t qgroupid);
/// BTRFS_IOC_FS_INFO: the filesystem's fsid as 36 characters of text plus NUL.
int sliver_btrfs_fsid(int fd, char out[37]);

/// FS_IOC_FSGETXATTR: the project id of `fd`.
int sliver_fs_get_project(int fd, uint32_t *projid);
/// FS_IOC_FSSETXATTR: sets the project id of `fd` and FS_XFLAG_PROJINHERIT (new files and
/// directories below inherit it).
int sliver_fs_set_project(int fd, uint32_t projid);
/// quotactl_fd(Q_GETINFO, PRJQUOTA): 0 when project quotas are on for the filesystem of `fd`.
int sliver_quota_project_enabled(int fd);
/// quotactl_fd(Q_SETQUOTA, PRJQUOTA): hard limits of project `projid` in KiB and inodes (0 = none).
int sliver_quota_project_set(int fd, uint32_t projid, uint64_t block_hard_kib, uint64_t inode_hard);
/// quotactl_fd(Q_GETQUOTA, PRJQUOTA): usage (bytes, inodes) and hard limits (KiB, inodes).
int sliver_quota_project_get(int fd, uint32_t projid, uint64_t *space_bytes, uint64_t *inodes,
                             uint64_t *block_hard_kib, uint64_t *inode_hard);
#endif
