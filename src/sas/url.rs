//! Service endpoints and resource URLs.

use super::encoding::encode;
use super::{Resource, Service};

/// `https://{account}.{service}.core.windows.net`
pub fn default_endpoint(account: &str, service: Service) -> String {
    let service = match service {
        Service::Blob => "blob",
        Service::Queue => "queue",
        Service::Table => "table",
        Service::File => "file",
    };
    format!("https://{account}.{service}.core.windows.net")
}

/// The resource's URL under a service endpoint (a trailing `/` on `endpoint` is dropped), with
/// path segments percent-encoded and the `/` between them kept; for an account SAS, the
/// endpoint itself.
pub fn resource_url(endpoint: &str, resource: &Resource) -> String {
    let mut url = endpoint.trim_end_matches('/').to_owned();
    let (first, rest) = match resource {
        Resource::Account { .. } => return url,
        Resource::Container { container } => (container, None),
        Resource::Blob {
            container,
            blob: path,
            ..
        }
        | Resource::Directory { container, path } => (container, Some(path)),
        Resource::Share { share } => (share, None),
        Resource::File { share, path } => (share, Some(path)),
        Resource::Queue { queue } => (queue, None),
        Resource::Table { table, .. } => (table, None),
    };
    for part in std::iter::once(first).chain(rest) {
        url.push('/');
        // The encoder keeps `/`, so each segment of a path is encoded on its own.
        url.push_str(&encode(part));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints_name_the_service() {
        assert_eq!(
            default_endpoint("acct", Service::Blob),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            default_endpoint("acct", Service::Queue),
            "https://acct.queue.core.windows.net"
        );
        assert_eq!(
            default_endpoint("acct", Service::Table),
            "https://acct.table.core.windows.net"
        );
        assert_eq!(
            default_endpoint("acct", Service::File),
            "https://acct.file.core.windows.net"
        );
    }

    #[test]
    fn blob_urls_encode_segments_and_keep_slashes() {
        let blob = Resource::Blob {
            container: "c1".into(),
            blob: "dir a/b+c.txt".into(),
            snapshot: None,
            version_id: None,
        };
        assert_eq!(
            resource_url("http://127.0.0.1:10000/acct/", &blob),
            "http://127.0.0.1:10000/acct/c1/dir%20a/b%2Bc.txt"
        );
    }

    #[test]
    fn account_url_is_the_endpoint() {
        let account = Resource::Account {
            services: "b".into(),
            resource_types: "s".into(),
        };
        assert_eq!(
            resource_url("https://acct.blob.core.windows.net/", &account),
            "https://acct.blob.core.windows.net"
        );
    }

    #[test]
    fn queue_table_share_and_file_urls() {
        let e = "https://e";
        assert_eq!(
            resource_url(e, &Resource::Queue { queue: "q1".into() }),
            "https://e/q1"
        );
        let table = Resource::Table {
            table: "Tbl".into(),
            key_range: Default::default(),
        };
        assert_eq!(resource_url(e, &table), "https://e/Tbl");
        assert_eq!(
            resource_url(e, &Resource::Share { share: "s1".into() }),
            "https://e/s1"
        );
        let file = Resource::File {
            share: "s1".into(),
            path: "a/b c".into(),
        };
        assert_eq!(resource_url(e, &file), "https://e/s1/a/b%20c");
    }
}
