#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tree-to-oci.py - packs a directory tree as a multi-layer OCI image
archive whose merged layers are exactly that tree, so that a test can boot
`erofs-nbd --image` of it and expect what it would expect of the tree.

    tree-to-oci.py TREE REF OUT.tar

REF is the image name (e.g. localhost/erofs-vm-test:latest); load the
archive with `podman load -i OUT.tar`.  The layers, bottom first, make the
merge do real work (OCI image-spec layer.md whiteouts):
  1. the tree, except `marker`, plus decoys: a directory `marker` with
     files, a wrong `data.bin` of another size, a directory `junk`, 50
     extra files in `many/` and `etc/decoy`
  2. whiteouts `.wh.junk` and `many/.wh.extra-N`, the right `data.bin`,
     and `etc/` made opaque (`.wh..wh..opq`) with the tree's `etc/` files
  3. `marker`, a file over the decoy directory
Entries are uid/gid 0 with the tree's modes and mtimes.
"""

import hashlib
import io
import json
import os
import stat
import sys
import tarfile


def tarinfo(name, mode, size=0, kind=tarfile.REGTYPE, mtime=1600000000, linkname=''):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime, ti.linkname = kind, mode, size, mtime, linkname
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = 'root'
    return ti


def add_file(tar, name, data, mode=0o644):
    tar.addfile(tarinfo(name, mode, len(data)), io.BytesIO(data))


def add_tree(tar, root, skip):
    """Adds every entry of root (sorted, parents first) but those in skip."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in [None] + sorted(filenames + [d for d in dirnames
                                                 if os.path.islink(os.path.join(dirpath, d))]):
            rel = rel_dir if name is None else os.path.normpath(os.path.join(rel_dir, name))
            if rel.split('/')[0] in skip or rel in skip:
                continue
            path = os.path.join(root, rel)
            st = os.lstat(path)
            arc = './' if rel == '.' else './' + rel
            if stat.S_ISDIR(st.st_mode):
                tar.addfile(tarinfo(arc, stat.S_IMODE(st.st_mode), kind=tarfile.DIRTYPE,
                                    mtime=int(st.st_mtime)))
            elif stat.S_ISLNK(st.st_mode):
                tar.addfile(tarinfo(arc, 0o777, kind=tarfile.SYMTYPE, mtime=int(st.st_mtime),
                                    linkname=os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, 'rb') as f:
                    tar.addfile(tarinfo(arc, stat.S_IMODE(st.st_mode), st.st_size,
                                        mtime=int(st.st_mtime)), f)
            # (the VM trees hold nothing else)


def layer(build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def main():
    tree, ref, out = sys.argv[1:4]
    dirs = [d for d in ('etc', 'many') if os.path.isdir(os.path.join(tree, d))]

    def base(tar):
        add_tree(tar, tree, {'marker', 'data.bin'})
        tar.addfile(tarinfo('./marker', 0o755, kind=tarfile.DIRTYPE))
        add_file(tar, './marker/decoy', b'not the marker\n')
        add_file(tar, './data.bin', b'wrong data\n')
        tar.addfile(tarinfo('./junk', 0o755, kind=tarfile.DIRTYPE))
        add_file(tar, './junk/file', b'junk\n')
        if 'many' in dirs:
            for i in range(50):
                add_file(tar, './many/extra-%d' % i, b'extra\n')
        if 'etc' in dirs:
            add_file(tar, './etc/decoy', b'decoy\n')

    def fixes(tar):
        add_file(tar, './.wh.junk', b'', 0)
        if 'many' in dirs:
            tar.addfile(tarinfo('./many', 0o755, kind=tarfile.DIRTYPE,
                                mtime=int(os.lstat(os.path.join(tree, 'many')).st_mtime)))
            for i in range(50):
                add_file(tar, './many/.wh.extra-%d' % i, b'', 0)
        if 'etc' in dirs:
            st = os.lstat(os.path.join(tree, 'etc'))
            tar.addfile(tarinfo('./etc', stat.S_IMODE(st.st_mode), kind=tarfile.DIRTYPE,
                                mtime=int(st.st_mtime)))
            add_file(tar, './etc/.wh..wh..opq', b'', 0)
            for name in sorted(os.listdir(os.path.join(tree, 'etc'))):
                p = os.path.join(tree, 'etc', name)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, 'rb') as f:
                        add_file(tar, './etc/' + name, f.read(), stat.S_IMODE(os.lstat(p).st_mode))
        p = os.path.join(tree, 'data.bin')
        if os.path.exists(p):
            with open(p, 'rb') as f:
                add_file(tar, './data.bin', f.read(), stat.S_IMODE(os.lstat(p).st_mode))

    def top(tar):
        p = os.path.join(tree, 'marker')
        with open(p, 'rb') as f:
            add_file(tar, './marker', f.read(), stat.S_IMODE(os.lstat(p).st_mode))

    layers = [layer(base), layer(fixes), layer(top)]
    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {'digest': 'sha256:' + d, 'size': len(data)}

    config = json.dumps({
        'architecture': 'amd64', 'os': 'linux', 'config': {},
        'rootfs': {'type': 'layers',
                   'diff_ids': ['sha256:' + hashlib.sha256(l).hexdigest() for l in layers]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        'schemaVersion': 2,
        'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': dict(mediaType='application/vnd.oci.image.config.v1+json', **blob(config)),
        'layers': [dict(mediaType='application/vnd.oci.image.layer.v1.tar', **blob(l))
                   for l in layers],
    }, sort_keys=True).encode()
    index = json.dumps({
        'schemaVersion': 2,
        'manifests': [dict(mediaType='application/vnd.oci.image.manifest.v1+json',
                           annotations={'org.opencontainers.image.ref.name': ref},
                           **blob(manifest))],
    }, sort_keys=True).encode()
    with tarfile.open(out, 'w') as tar:
        add_file(tar, 'oci-layout', b'{"imageLayoutVersion": "1.0.0"}')
        add_file(tar, 'index.json', index)
        for d, data in sorted(blobs.items()):
            add_file(tar, 'blobs/sha256/' + d, data)


if __name__ == '__main__':
    sys.exit(main())
