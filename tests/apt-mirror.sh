# SPDX-License-Identifier: MIT
# tests/apt-mirror.sh - sourced by scripts that debootstrap a tree
# (tests/test-distro.sh, tests/os/mktree.sh).
#
# apt_mirror: prints the Debian mirror apt uses here, without a trailing
# slash: deb822 .sources files first, then one-line lists, else
# deb.debian.org.
apt_mirror()
{
	local m
	m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources |
		awk '{for (i = 2; i <= NF; i++) print $i}' | grep -m1 '/debian/\?$') ||
	m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
		awk '{print ($2 ~ /^\[/) ? $3 : $2}' | grep -m1 '/debian/\?$') ||
	m=http://deb.debian.org/debian
	echo "${m%/}"
}
