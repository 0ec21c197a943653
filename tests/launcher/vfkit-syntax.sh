# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# tests/launcher/vfkit-syntax.sh - a checker for vfkit command lines, written
# from shared/docs/vfkit-launch.md §1 (not from the launcher), so that
# tests/test-vfkit-dryrun.sh can check dry runs on Linux where vfkit does
# not exist.  Source it (bash); it defines:
#
#   vfkit_check_argv FILE   FILE has one argument per line (argv[0] first).
#                           Succeeds if vfkit would accept the command line;
#                           else prints every problem on stderr, fails.
#
# The rules checked:
#   §1.2  flags: --cpus N, --memory MiB (integers), --bootloader,
#         --device (repeatable), --restful-uri, --log-level, --pidfile;
#         anything else is unknown.
#   §1.3  exactly one --bootloader: "efi,variable-store=PATH[,create]" or
#         "linux,kernel=PATH,initrd=PATH,cmdline=..." (quote-aware: a
#         double-quoted value may hold commas; unknown keys are errors).
#   §1.4  --device values split on every ',' with no quoting; key=value
#         splits on the first '='; booleans are bare words.
#   §1.5  nbd: uri= (schemes nbd, nbds, nbd+unix, nbds+unix) and deviceId=
#         (no '/', at most 255 bytes) required; readonly; timeout=MS;
#         sync=full|none.
#   §1.7  virtio-serial: exactly one of logFilePath=PATH, stdio, pty.
#   §1.8  virtio-net: nat, mac=, fd=N, unixSocketPath=PATH; nat, fd and
#         unixSocketPath exclusive.
#   §1.9  virtio-vsock: port=N, socketURL=PATH, listen|connect.
#   §1.10 virtio-rng: no options.
#   §1.11 --restful-uri: unix:///ABS (path under 104 bytes), tcp://HOST:PORT,
#         none://.

_vfkit_err() {
	echo "vfkit syntax: $*" >&2
	_vfkit_bad=1
}

# _vfkit_abs WHAT PATH: PATH must be absolute (every path the launcher
# gives is).
_vfkit_abs() {
	case $2 in /*) ;; *) _vfkit_err "$1: '$2' is not an absolute path" ;; esac
}

_vfkit_bootloader() {
	local v=$1 rest tok key val i q ch
	case $v in
	efi,*)
		IFS=, read -r -a toks <<<"${v#efi,}"
		local store=
		for tok in "${toks[@]}"; do
			case $tok in
			variable-store=*) store=${tok#variable-store=} ;;
			create) ;;
			*) _vfkit_err "bootloader efi: unknown option '$tok'" ;;
			esac
		done
		[ -n "$store" ] || _vfkit_err "bootloader efi: no variable-store="
		_vfkit_abs "variable-store" "$store"
		;;
	linux,*)
		# Quote-aware split on ','.
		rest=${v#linux,}
		local parts=() cur='' kernel='' initrd='' cmdline_set=0
		q=0
		for ((i = 0; i < ${#rest}; i++)); do
			ch=${rest:i:1}
			if [ "$ch" = '"' ]; then
				q=$((1 - q))
				cur+=$ch
			elif [ "$ch" = , ] && [ $q = 0 ]; then
				parts+=("$cur")
				cur=
			else
				cur+=$ch
			fi
		done
		parts+=("$cur")
		[ $q = 0 ] || _vfkit_err "bootloader linux: unbalanced '\"'"
		for tok in "${parts[@]}"; do
			key=${tok%%=*}
			val=${tok#*=}
			case $key in
			kernel) kernel=$val ;;
			initrd) initrd=$val ;;
			cmdline)
				cmdline_set=1
				case $val in
				\"*\") [[ ${val:1:${#val}-2} != *\"* ]] ||
					_vfkit_err "bootloader linux: '\"' inside cmdline" ;;
				*) [[ $val != *\"* ]] || _vfkit_err "bootloader linux: stray '\"' in cmdline" ;;
				esac
				;;
			*) _vfkit_err "bootloader linux: unknown option '$tok'" ;;
			esac
		done
		[ -n "$kernel" ] || _vfkit_err "bootloader linux: no kernel="
		[ -n "$kernel" ] && _vfkit_abs kernel "$kernel"
		[ -n "$initrd" ] && _vfkit_abs initrd "$initrd"
		[ $cmdline_set = 1 ] || _vfkit_err "bootloader linux: no cmdline="
		;;
	*) _vfkit_err "unknown bootloader '$v'" ;;
	esac
}

_vfkit_device() {
	local v=$1 type tok key val
	local -a toks
	IFS=, read -r -a toks <<<"$v"
	type=${toks[0]}
	toks=("${toks[@]:1}")
	case $type in
	nbd)
		local uri='' id=''
		for tok in ${toks[@]+"${toks[@]}"}; do
			key=${tok%%=*}
			val=${tok#*=}
			case $tok in
			uri=*) uri=$val ;;
			deviceId=*) id=$val ;;
			readonly) ;;
			timeout=*) [[ $val =~ ^[0-9]+$ ]] || _vfkit_err "nbd: timeout '$val' is not a number" ;;
			sync=full | sync=none) ;;
			*) _vfkit_err "nbd: unknown or malformed option '$tok'" ;;
			esac
		done
		[ -n "$uri" ] || _vfkit_err "nbd: no uri="
		[ -n "$id" ] || _vfkit_err "nbd: no deviceId= (mandatory for nbd)"
		[[ $id != */* ]] || _vfkit_err "nbd: deviceId '$id' contains '/'"
		[ ${#id} -le 255 ] || _vfkit_err "nbd: deviceId longer than 255"
		case $uri in
		nbd+unix:///* | nbds+unix:///*)
			[[ $uri == *\?socket=/* ]] || _vfkit_err "nbd: unix URI '$uri' without ?socket=/ABS"
			;;
		nbd://?* | nbds://?*) ;;
		'') ;;
		*) _vfkit_err "nbd: URI scheme of '$uri' is not nbd, nbds, nbd+unix or nbds+unix" ;;
		esac
		;;
	virtio-serial)
		local n=0
		for tok in ${toks[@]+"${toks[@]}"}; do
			case $tok in
			logFilePath=*) n=$((n + 1)); _vfkit_abs logFilePath "${tok#logFilePath=}" ;;
			stdio | pty) n=$((n + 1)) ;;
			*) _vfkit_err "virtio-serial: unknown option '$tok'" ;;
			esac
		done
		[ $n = 1 ] || _vfkit_err "virtio-serial: needs exactly one of logFilePath=, stdio, pty"
		;;
	virtio-rng)
		[ ${#toks[@]} = 0 ] || _vfkit_err "virtio-rng takes no options"
		;;
	virtio-net)
		local modes=0
		for tok in ${toks[@]+"${toks[@]}"}; do
			case $tok in
			nat) modes=$((modes + 1)) ;;
			fd=*) modes=$((modes + 1)) ;;
			unixSocketPath=*) modes=$((modes + 1)); _vfkit_abs unixSocketPath "${tok#*=}" ;;
			mac=*) [[ ${tok#mac=} =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] ||
				_vfkit_err "virtio-net: bad mac '${tok#mac=}'" ;;
			*) _vfkit_err "virtio-net: unknown option '$tok'" ;;
			esac
		done
		[ $modes -le 1 ] || _vfkit_err "virtio-net: nat, fd and unixSocketPath are exclusive"
		;;
	virtio-vsock)
		local port='' url='' dir=0
		for tok in ${toks[@]+"${toks[@]}"}; do
			case $tok in
			port=*) port=${tok#port=} ;;
			socketURL=*) url=${tok#socketURL=} ;;
			listen | connect) dir=$((dir + 1)) ;;
			*) _vfkit_err "virtio-vsock: unknown option '$tok'" ;;
			esac
		done
		[[ $port =~ ^[0-9]+$ ]] || _vfkit_err "virtio-vsock: port '$port' is not a number"
		_vfkit_abs socketURL "$url"
		[ $dir -le 1 ] || _vfkit_err "virtio-vsock: listen and connect together"
		;;
	*) _vfkit_err "unknown or unexpected device type '$type'" ;;
	esac
}

vfkit_check_argv() {
	local file=$1 i n arg val nboot=0
	local -a a
	_vfkit_bad=0
	mapfile -t a <"$file"
	n=${#a[@]}
	[ "$n" -gt 0 ] || { echo "vfkit syntax: empty command line" >&2; return 1; }
	case ${a[0]} in
	vfkit | */vfkit) ;;
	*) _vfkit_err "argv[0] '${a[0]}' is not vfkit" ;;
	esac
	for ((i = 1; i < n; i++)); do
		arg=${a[i]}
		case $arg in
		--cpus | --memory | --bootloader | --device | --restful-uri | --log-level | --pidfile)
			if ((i + 1 >= n)); then
				_vfkit_err "$arg without a value"
				break
			fi
			i=$((i + 1))
			val=${a[i]}
			;;
		*)
			_vfkit_err "unknown argument '$arg'"
			continue
			;;
		esac
		case $arg in
		--cpus | --memory)
			[[ $val =~ ^[1-9][0-9]*$ ]] || _vfkit_err "$arg '$val' is not a positive integer" ;;
		--bootloader)
			nboot=$((nboot + 1))
			_vfkit_bootloader "$val" ;;
		--device) _vfkit_device "$val" ;;
		--restful-uri)
			case $val in
			unix:///*)
				[ ${#val} -lt $((7 + 104)) ] || _vfkit_err "REST socket path is 104 bytes or more"
				;;
			tcp://?*:[0-9]* | none://) ;;
			*) _vfkit_err "--restful-uri '$val' is not unix:///ABS, tcp://HOST:PORT or none://" ;;
			esac
			;;
		--log-level)
			case $val in debug | info | error) ;; *) _vfkit_err "bad --log-level '$val'" ;; esac ;;
		--pidfile) _vfkit_abs --pidfile "$val" ;;
		esac
	done
	[ $nboot = 1 ] || _vfkit_err "needs exactly one --bootloader (has $nboot)"
	return $_vfkit_bad
}
