# SPDX-License-Identifier: GPL-2.0
#
# kfunctions - which kernel objects define each text function, for
# harness/verdict and harness/profile-report.

import subprocess


def functions(obj):
    """The text functions of the kernel built in @obj: {name: {objects}}.

    Only the kernel's own objects count, not those of the boot
    decompressor or of the host tools, which define the same names.
    """
    objs = subprocess.run(['find', '.', '(', '-path', './arch/*/boot',
                           '-o', '-path', './scripts', '-o', '-path',
                           './tools', '-o', '-path', './usr', ')', '-prune',
                           '-o', '-name', '*.o', '!', '-name', 'vmlinux.o',
                           '!', '-name', '*.mod.o', '-print'], cwd=obj,
                          check=True, capture_output=True,
                          text=True).stdout.split()
    out = subprocess.run(['xargs', 'nm', '-A', '--defined-only'], cwd=obj,
                         input='\n'.join(objs), capture_output=True,
                         text=True).stdout
    where = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in 'tT':
            where.setdefault(f[2], set()).add(f[0].split(':')[0][2:])
    return where
