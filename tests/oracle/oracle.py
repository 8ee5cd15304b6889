"""Differential-test oracle: signs SAS tokens with Azure's own Python SDKs.

Reads JSON lines on stdin, one case each:
  {"id": 7, "kind": "blob", "flags": {"--account-name": "...", ...}}
`flags` uses the exact flag names of `sas-operator sign`; repeatable flags
(--request-header, --request-query) are lists; --user-delegation-key is the key
JSON object inline. Writes one JSON line per case: {"id": 7, "token": "..."} or
{"id": 7, "error": "..."}. One process serves a whole run (spawning Python per
case is too slow).

SDK quirks this script maps (read from the pinned SDK sources):
- blob, queue and file-share SDKs always sign with their own newest sv (the
  module constant X_MS_VERSION); a case must not ask for another one.
- azure-data-tables signs with sv 2019-02-02 (its generated X_MS_VERSION); the
  table string-to-sign does not depend on sv, so a case may ask for another sv
  and we set the module constant the table signer reads.
- Permissions go through the SDK's own *SasPermissions.from_string, so the SDK
  decides the canonical letter order. Directory SAS has no permission class in
  the blob SDK (it lives in azure-storage-file-datalake), so for it the letters
  are ordered here by the documented order `racwdltmeop`.
- Services (ss) and resource types (srt) are passed as strings: the SDK keeps
  them in the order given.
"""

import json
import sys

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableSasPermissions, generate_table_sas
import azure.data.tables._table_shared_access_signature as table_sas_module
from azure.storage.blob import (
    AccountSasPermissions,
    BlobSasPermissions,
    ContainerSasPermissions,
    UserDelegationKey,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)
from azure.storage.fileshare import (
    FileSasPermissions,
    ShareSasPermissions,
    generate_file_sas,
    generate_share_sas,
)
from azure.storage.queue import QueueSasPermissions, generate_queue_sas
from azure.storage.blob._shared.constants import X_MS_VERSION as BLOB_SV
from azure.storage.queue._shared.constants import X_MS_VERSION as QUEUE_SV
from azure.storage.fileshare._shared.constants import X_MS_VERSION as FILE_SV

TABLE_DEFAULT_SV = table_sas_module.X_MS_VERSION
DIRECTORY_ORDER = "racwdltmeop"

KNOWN_FLAGS = {
    "--account-name", "--account-key", "--user-delegation-key", "--permissions",
    "--start", "--expiry", "--ip", "--protocol", "--sas-version", "--services",
    "--resource-types", "--container-name", "--name", "--snapshot", "--version-id",
    "--share-name", "--path", "--queue-name", "--table-name", "--start-pk",
    "--start-rk", "--end-pk", "--end-rk", "--policy-name", "--encryption-scope",
    "--cache-control", "--content-disposition", "--content-encoding",
    "--content-language", "--content-type", "--authorized-user-object-id",
    "--unauthorized-user-object-id", "--correlation-id", "--delegated-user-object-id",
    "--request-header", "--request-query",
}


def user_delegation_key(flags):
    raw = flags.get("--user-delegation-key")
    if raw is None:
        return None
    key = UserDelegationKey()
    key.signed_oid = raw["signedOid"]
    key.signed_tid = raw["signedTid"]
    key.signed_start = raw["signedStart"]
    key.signed_expiry = raw["signedExpiry"]
    key.signed_service = raw["signedService"]
    key.signed_version = raw["signedVersion"]
    key.signed_delegated_user_tid = raw.get("signedDelegatedUserTid")
    key.value = raw["value"]
    return key


def name_value_pairs(flags, flag):
    """`name:value` strings -> ordered dict (the SDK signs them in insertion order)."""
    pairs = {}
    for item in flags.get(flag, []):
        name, _, value = item.partition(":")
        pairs[name] = value
    return pairs or None


def require_sv(flags, sdk_sv, kind):
    asked = flags.get("--sas-version")
    if asked is not None and asked != sdk_sv:
        raise ValueError(f"the Python SDK signs {kind} only with sv {sdk_sv}, case asks {asked}")


def permission(flags, parse):
    letters = flags.get("--permissions")
    return None if letters is None else parse(letters)


def common(flags):
    return dict(
        expiry=flags.get("--expiry"),
        start=flags.get("--start"),
        policy_id=flags.get("--policy-name"),
        ip=flags.get("--ip"),
        protocol=flags.get("--protocol"),
    )


def response_headers(flags):
    return dict(
        cache_control=flags.get("--cache-control"),
        content_disposition=flags.get("--content-disposition"),
        content_encoding=flags.get("--content-encoding"),
        content_language=flags.get("--content-language"),
        content_type=flags.get("--content-type"),
    )


def blob_extras(flags):
    """Keyword arguments of generate_blob_sas / generate_container_sas beyond the basics."""
    extras = dict(
        encryption_scope=flags.get("--encryption-scope"),
        user_delegation_oid=flags.get("--delegated-user-object-id"),
        request_headers=name_value_pairs(flags, "--request-header"),
        request_query_params=name_value_pairs(flags, "--request-query"),
        # the SDK's names for saoid / suoid / scid
        preauthorized_agent_object_id=flags.get("--authorized-user-object-id"),
        agent_object_id=flags.get("--unauthorized-user-object-id"),
        correlation_id=flags.get("--correlation-id"),
    )
    extras.update(response_headers(flags))
    return extras


def sign(kind, flags):
    unknown = set(flags) - KNOWN_FLAGS
    if unknown:
        raise ValueError(f"unknown flags {sorted(unknown)}")
    account = flags["--account-name"]
    key = flags.get("--account-key")
    udk = user_delegation_key(flags)

    if kind == "account":
        require_sv(flags, BLOB_SV, kind)
        return generate_account_sas(
            account,
            key,
            resource_types=flags["--resource-types"],
            permission=AccountSasPermissions.from_string(flags["--permissions"]),
            expiry=flags["--expiry"],
            start=flags.get("--start"),
            ip=flags.get("--ip"),
            services=flags["--services"],
            protocol=flags.get("--protocol"),
            encryption_scope=flags.get("--encryption-scope"),
        )
    if kind == "container":
        require_sv(flags, BLOB_SV, kind)
        args = common(flags)
        protocol = args.pop("protocol")
        return generate_container_sas(
            account,
            flags["--container-name"],
            account_key=key,
            user_delegation_key=udk,
            permission=permission(flags, ContainerSasPermissions.from_string),
            protocol=protocol,
            **args,
            **blob_extras(flags),
        )
    if kind in ("blob", "directory"):
        require_sv(flags, BLOB_SV, kind)
        args = common(flags)
        protocol = args.pop("protocol")
        if kind == "directory":
            letters = flags.get("--permissions")
            perm = None if letters is None else "".join(c for c in DIRECTORY_ORDER if c in letters)
        else:
            perm = permission(flags, BlobSasPermissions.from_string)
        return generate_blob_sas(
            account,
            flags["--container-name"],
            flags["--name"],
            snapshot=flags.get("--snapshot"),
            account_key=key,
            user_delegation_key=udk,
            permission=perm,
            version_id=flags.get("--version-id"),
            is_directory=(kind == "directory") or None,
            protocol=protocol,
            **args,
            **blob_extras(flags),
        )
    if kind in ("share", "file"):
        require_sv(flags, FILE_SV, kind)
        args = common(flags)
        shared = dict(
            account_key=key,
            user_delegation_key=udk,
            user_delegation_oid=flags.get("--delegated-user-object-id"),
            **args,
            **response_headers(flags),
        )
        if kind == "share":
            return generate_share_sas(
                account,
                flags["--share-name"],
                permission=permission(flags, ShareSasPermissions.from_string),
                **shared,
            )
        return generate_file_sas(
            account,
            flags["--share-name"],
            flags["--path"].split("/"),
            permission=permission(flags, FileSasPermissions.from_string),
            **shared,
        )
    if kind == "queue":
        require_sv(flags, QUEUE_SV, kind)
        return generate_queue_sas(
            account,
            flags["--queue-name"],
            account_key=key,
            user_delegation_key=udk,
            user_delegation_oid=flags.get("--delegated-user-object-id"),
            permission=permission(flags, QueueSasPermissions.from_string),
            **common(flags),
        )
    if kind == "table":
        if udk is not None:
            raise ValueError("no SDK signs a table user delegation SAS")
        table_sas_module.X_MS_VERSION = flags.get("--sas-version", TABLE_DEFAULT_SV)
        try:
            return generate_table_sas(
                AzureNamedKeyCredential(account, key),
                flags["--table-name"],
                permission=permission(flags, TableSasPermissions.from_string),
                expiry=flags.get("--expiry"),
                start=flags.get("--start"),
                ip_address_or_range=flags.get("--ip"),
                policy_id=flags.get("--policy-name"),
                protocol=flags.get("--protocol"),
                start_pk=flags.get("--start-pk"),
                start_rk=flags.get("--start-rk"),
                end_pk=flags.get("--end-pk"),
                end_rk=flags.get("--end-rk"),
            )
        finally:
            table_sas_module.X_MS_VERSION = TABLE_DEFAULT_SV
    raise ValueError(f"unknown kind {kind!r}")


def main():
    if sys.argv[1:] == ["--versions"]:
        print(json.dumps({"blob": BLOB_SV, "queue": QUEUE_SV, "file": FILE_SV, "table": TABLE_DEFAULT_SV}))
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            result = {"id": case["id"], "token": sign(case["kind"], case["flags"])}
        except Exception as error:  # an oracle error is a result, reported per case
            result = {"id": case["id"], "error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
