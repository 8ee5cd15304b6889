# Sourced by `make test`: exports where the cached test components live.
_hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$_hack_dir/versions.env"
export SAS_OPERATOR_CACHE="${SAS_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sas-operator}"
