# Sourced by launch/tpu.sh, launch/gpu.sh and launch/slurm.sbatch: the dry-run switch, the
# quoting that prints a command so it can be pasted back into a shell, and usage errors.
# The sourcing script sets SCRIPT_NAME first.
# shellcheck shell=bash

# DRY_RUN=1 in the environment, or the --dry_run flag, prints commands instead of running them.
DRY_RUN=${DRY_RUN:-0}

# Prints a usage error naming the problem and the fix, then exits 2 (bad usage).
usage_error() {
  printf '%s: error: %s\n(%s --help lists the options)\n' "$SCRIPT_NAME" "$1" "$SCRIPT_NAME" >&2
  exit 2
}

# Checks DRY_RUN once the flags are read: anything but 0 or 1 is a typo worth refusing.
check_dry_run() {
  [[ $DRY_RUN == 0 || $DRY_RUN == 1 ]] ||
    usage_error "DRY_RUN=$DRY_RUN: use DRY_RUN=1 (print the commands) or leave it unset"
}

# Prints one word as a shell would need it: plain words as they are (a dry run stays
# readable), anything else in single quotes.
quote_word() {
  local word=$1
  if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Prints the words of a command quoted and joined by spaces, without a newline.
quote_words() {
  local quoted=() word
  for word in "$@"; do
    quoted+=("$(quote_word "$word")")
  done
  printf '%s' "${quoted[*]}"
}

# Runs a command, or in a dry run prints it (one line, pasteable).
run() {
  if [[ $DRY_RUN == 1 ]]; then
    quote_words "$@"
    printf '\n'
  else
    "$@"
  fi
}

# The value of a --name=value flag; a bare --name (no '=') or an empty value is a usage error.
flag_value() {
  local arg=$1
  [[ $arg == *=* && -n ${arg#*=} ]] || usage_error "${arg%%=*} needs a value: ${arg%%=*}=VALUE"
  printf '%s' "${arg#*=}"
}

# Refuses a value that is not a positive integer, naming the flag.
require_positive_int() {
  local name=$1 value=$2
  [[ $value =~ ^[1-9][0-9]*$ ]] || usage_error "$name=$value: give a positive whole number"
}
