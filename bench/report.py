#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# bench/report.py RESULTS OUTDIR - prints the bench table from the results
# the sections recorded (TSV: section, tree, server, metric, value) and
# writes the data files bench/plot.gp draws.  What each row means:
# bench/README.md.
import collections, sys

res = collections.defaultdict(dict)     # (section, tree, server) -> metric -> value
trees = []
for line in open(sys.argv[1]):
    sec, tree, srv, metric, value = line.rstrip('\n').split('\t')
    res[(sec, tree, srv)][metric] = value
    if sec in ('read', 'startup') and tree not in trees:
        trees.append(tree)
out = sys.argv[2]

def f(x, d=0):
    return '-' if x is None else '%.*f' % (d, x)

def ratio(a, b):
    return a / b if a is not None and b else None

def vals(sec, tree, srv, metric):
    v = res.get((sec, tree, srv), {}).get(metric)
    return [float(x) for x in v.split()] if v else None

SERVERS = [
    ('erofs-nbd', 'erofs-nbd, io_uring (default)', 'copy; splice for immutable/verity files'),
    ('erofs-nbd-zc', 'erofs-nbd --immutable-sources', 'splice (zero-copy) when cached'),
    ('erofs-nbd-plain', 'erofs-nbd --no-io-uring', 'threads, copy'),
    ('nbdkit-file', 'nbdkit file, mkfs.erofs image', 'pread + send'),
    ('qemu-nbd', 'qemu-nbd, same image', 'coroutines'),
    ('ceiling', 'nbdkit null (transport ceiling)', 'memset + send'),
]
def print_many(t):
    """The section `many` lines of tree t, if it ran."""
    mc = res.get(('many', t, 'erofs-nbd'))
    if mc:
        print('connections: 1 client %.0f MB/s, 64 concurrent clients %.0f MB/s in all (%.2fx; >= 1.0); '
              '%s KiB per connection' % (
                  float(mc['conns1_mbs']), float(mc['conns64_mbs']),
                  float(mc['conns64_mbs']) / float(mc['conns1_mbs']),
                  res.get(('mem', t, 'erofs-nbd'), {}).get('per_conn_kib', '-')))
        peers = [(k, res[('many', t, k)]) for k in ('erofs-nbd-plain', 'nbdkit-file', 'ceiling')
                 if ('many', t, k) in res]
        if peers:
            print('  same clients: ' + '; '.join(
                '%s %.0f -> %.0f MB/s (%.2fx)' % (
                    k, float(v['conns1_mbs']), float(v['conns64_mbs']),
                    float(v['conns64_mbs']) / float(v['conns1_mbs'])) for k, v in peers))

readdat = open(out + '/read.dat', 'w')
readdat.write('# tree server seqMBs seq1MBs randIOPS\n')
for t in [t for t in trees if ('tree', t, '-') in res and ('read', t, 'erofs-nbd') in res]:
    tr = res[('tree', t, '-')]
    print('tree %s: %s entries, %s regular files, %.1f MiB of file data; export %.1f MiB, '
          'of which %.1f MiB metadata (mkfs.erofs image %.1f MiB)' % (
              t, tr.get('entries'), tr.get('files'), int(tr.get('bytes', 0)) / 2**20,
              int(tr.get('export_size', 0)) / 2**20, int(tr.get('meta_bytes', 0)) / 2**20,
              int(tr.get('mkfs_size', 0)) / 2**20))
    print('| server | path | seq MB/s | srv ms/GB | cli ms/GB | seq -C 1 MB/s | srv ms/GB | cli ms/GB '
          '| 4K rand IOPS | srv ms/kIO | cli ms/kIO |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    best = {}
    for key, label, path in SERVERS:
        s, s1, r = (vals('read', t, key, m) for m in ('seq', 'seq1', 'rand'))
        if not s:
            continue
        r = r or [None] * 3
        print('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            label, path, f(s[0]), f(s[1]), f(s[2]), f(s1[0]), f(s1[1]), f(s1[2]),
            f(r[0]), f(r[1], 1), f(r[2], 1)))
        readdat.write('%s %s %s %s %s\n' % (t, key, s[0], s1[0], r[0] if r[0] else 0))
        best[key] = (s[0], s1[0], r[0])
    ceil = max(v[0] for v in best.values())
    ceil1 = max(v[1] for v in best.values())
    kit = best.get('nbdkit-file')
    # Sequential ratios against nbdkit compare pass times, not MB/s: our
    # export and the mkfs.erofs image hold the same tree in a few % more or
    # fewer bytes.  The ceiling is a rate (bytes a second), as MB/s is.
    ours_size = float(tr.get('export_size', 0))
    kit_size = float(tr.get('mkfs_size', 0)) or ours_size
    def seq_ratio(o, k):
        if not o or not k or not ours_size:
            return None
        return (kit_size / k) / (ours_size / o)
    print()
    print('transport ceiling (the fastest any server fed this client here, nbdkit null included): '
          '%.0f MB/s default, %.0f MB/s -C 1' % (ceil, ceil1))
    print('sequential "x nbdkit" is nbdkit\'s pass time over ours (the same tree: %.1f MiB image, '
          '%.1f MiB export); 4K random compares IOPS' % (kit_size / 2**20, ours_size / 2**20))
    for key, lab in (('erofs-nbd', 'default'), ('erofs-nbd-zc', '--immutable-sources'),
                     ('erofs-nbd-plain', '--no-io-uring')):
        o = best.get(key)
        if not o or not kit:
            continue
        print('%-22s seq %.2fx nbdkit (>= 1.5), %3.0f%% of ceiling (>= 80%%); -C 1 %.2fx, %3.0f%%; '
              '4K random %.2fx nbdkit (>= 1.5)' % (
                  lab, seq_ratio(o[0], kit[0]), 100 * o[0] / ceil, seq_ratio(o[1], kit[1]),
                  100 * o[1] / ceil1, ratio(o[2], kit[2]) or 0))
    # The steady-state rows: no pass to start, so no nbdcopy start-up,
    # handshakes or per-connection threads in them (bench/README.md).
    steady = [(key, label, vals('read', t, key, 'steady')) for key, label, _ in SERVERS]
    steady = [(key, label, v) for key, label, v in steady if v]
    if steady:
        sceil = max(v[0] for _, _, v in steady)
        skit = dict((k, v) for k, _, v in steady).get('nbdkit-file')
        print()
        print('sequential steady state (fio, 4 connections x QD 16, 256 KiB, time-based):')
        print('| server | MB/s | srv ms/GB | cli ms/GB | x nbdkit | of ceiling |')
        print('|---|---|---|---|---|---|')
        for key, label, v in steady:
            r = seq_ratio(v[0], skit[0]) if skit and key.startswith('erofs-nbd') else None
            print('| %s | %s | %s | %s | %s | %s |' % (
                label, f(v[0]), f(v[1]), f(v[2]), '-' if r is None else '%.2fx' % r,
                '%.0f%%' % (100 * v[0] / sceil)))
    m = {k: res.get(('mem', t, k), {}) for k, _, _ in SERVERS}
    mo = m['erofs-nbd']
    empty = float(res.get(('mem', 'empty', 'erofs-nbd'), {}).get('rss_start_kib', 0))
    if mo.get('rss_start_kib'):
        ent = int(tr['entries'])
        above = (float(mo['rss_start_kib']) - empty) * 1024 - int(tr.get('meta_bytes', 0))
        print('memory: erofs-nbd RSS %.1f MiB at start (%.1f MiB with an empty tree), %.1f MiB peak '
              'after the reads; %.0f B per entry above the %.1f MiB of metadata (<= 300); '
              'peak after reads: %s' % (
                  float(mo['rss_start_kib']) / 1024, empty / 1024,
                  float(mo.get('rss_after_kib', 0)) / 1024, above / ent,
                  int(tr.get('meta_bytes', 0)) / 2**20,
                  ', '.join('%s %.1f MiB' % (k, float(v['rss_after_kib']) / 1024)
                            for k, v in m.items() if v.get('rss_after_kib') and k != 'erofs-nbd')))
    print_many(t)
    print()
# Trees the section many ran on without the section read.
for t in sorted({k[1] for k in res if k[0] == 'many'}):
    if ('read', t, 'erofs-nbd') not in res:
        print('tree %s:' % t)
        print_many(t)
        print()
readdat.close()

st = [(t, res[('startup', t, 'erofs-nbd')], res[('startup', t, 'mkfs.erofs')],
       res[('tree', t, '-')]) for t in trees if ('startup', t, 'erofs-nbd') in res]
if st:
    with open(out + '/startup.dat', 'w') as sd:
        sd.write('# tree entries erofs-nbd-s mkfs-s floor-s (metadata calls over all CPUs; NaN: none)\n')
        print('start-up: erofs-nbd from start to its URI line vs mkfs.erofs writing the image (medians);')
        print('floor: the CPU time of the system calls any walk of the tree makes (getdents64, statx,')
        print('xattrs, readlink; then + name_to_handle_at per file, as our walk did until 12-04), over all CPUs (bench/walk-floor.c)')
        print('| tree | entries | data MiB | erofs-nbd s | mkfs.erofs s | ratio | target '
              '| floor s, + handles | floor ratio, + handles |')
        print('|---|---|---|---|---|---|---|---|---|')
        for t, o, k, tr in sorted(st, key=lambda x: int(x[3]['entries'])):
            a, b = float(o['seconds']), float(k['seconds'])
            tgt = '<= 0.02' if int(tr['entries']) >= 100000 else '<= 0.05'
            fl = res.get(('startup', t, 'floor'))
            m = 'NaN'
            if fl:
                m, h = (float(fl[x]) / float(fl['cpus']) for x in ('metadata_cpu_s', 'handles_cpu_s'))
                floor = '%.4f, %.4f | %.3f, %.3f' % (m, h, m / b, h / b)
            else:
                floor = '- | -'
            print('| %s | %s | %.0f | %.3f | %.3f | %.3f | %s | %s |' % (
                t, tr['entries'], int(tr['bytes']) / 2**20, a, b, a / b, tgt, floor))
            sd.write('%s %s %s %s %s\n' % (t, tr['entries'], a, b, m))
    print()
e = res.get(('efi', 'efi', '-'))
if e:
    if 'skipped' in e:
        print('EFI boot: skipped: %s' % e['skipped'])
    else:
        a = float(res[('efi', 'efi', 'erofs-nbd')]['seconds'])
        b = float(res[('efi', 'efi', 'nbdkit-file')]['seconds'])
        print('EFI boot to marker (%s): erofs-nbd %.2f s, nbdkit file %.2f s, ratio %.2f (~1.0)' % (
            e['accel'], a, b, a / b))
        print(e.get('boots', ''))
# Sections whose own scripts print their rows: their lines, as recorded.
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1])]
for sec, title in (('image', 'start-up on a multi-layer podman image (bench/image.sh)'),
                   ('ssh', 'boot to a COMMAND\'s first output over SSH (bench/boot-ssh.sh)')):
    lines = [(m, v) for s, _, _, m, v in rows if s == sec]
    if lines:
        print()
        print(title + ':')
        for m, v in lines:
            print(v if m == 'line' else 'skipped: %s' % v)
