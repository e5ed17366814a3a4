//! Writing blobs to Azure: one Put Blob for a small blob; a large one in
//! blocks (Put Block, several at once), made visible whole by one Put
//! Block List. Every request carries the container's SAS (one with write
//! permission) and its body's `Content-MD5`, which Azure checks.
//!
//! Nothing is ever visible half-written: uncommitted blocks are not a blob.
//! Each block's id names its place and its MD5 (`000042-<md5 hex>`, in
//! base64, every id of a blob the same length as Azure wants), so a rerun
//! after a kill asks for the blocks the store holds uncommitted (Get Block
//! List) and sends only those it lacks. Azure drops uncommitted blocks a
//! week after their last change, and all of a blob's once it is committed.

use base64::Engine;
use bytes::Bytes;

use super::az::Az;
use super::put::{Caller, leaves};
use crate::fetch::RetryPolicy;
use crate::fetch::http1::Method;
use crate::fetch::net::Net;
use crate::units::hex;

/// Uploads to one container.
pub struct Blocks<'a> {
    pub az: &'a Az,
    caller: Caller<'a>,
}

/// The id of block `index` (from 0), whose MD5 is `sum`.
pub fn block_id(index: u32, sum: &[u8; 16]) -> String {
    let raw = format!("{index:06}-{}", hex(sum));
    base64::engine::general_purpose::STANDARD.encode(raw)
}

impl<'a> Blocks<'a> {
    pub fn new(
        az: &'a Az,
        net: &'a Net,
        policy: &'a RetryPolicy,
        stop: &'a std::sync::atomic::AtomicBool,
    ) -> Self {
        Blocks {
            az,
            caller: Caller::new(net, policy, stop),
        }
    }

    fn md5_header(sum: &[u8; 16]) -> String {
        base64::engine::general_purpose::STANDARD.encode(sum)
    }

    /// One whole blob; `sum` is the body's MD5.
    pub async fn put_blob(&self, name: &str, body: Bytes, sum: [u8; 16]) -> Result<(), String> {
        let url = self.az.object_url(name);
        let md5 = Self::md5_header(&sum);
        let h = [
            ("x-ms-blob-type", "BlockBlob"),
            ("Content-MD5", md5.as_str()),
        ];
        self.caller
            .call(Method::Put, &url, &h, body)
            .await
            .map(drop)
            .map_err(String::from)
    }

    /// Sends one block (uncommitted until [`Blocks::commit`]).
    pub async fn put_block(
        &self,
        name: &str,
        id: &str,
        body: Bytes,
        sum: [u8; 16],
    ) -> Result<(), String> {
        let url = self
            .az
            .object_url_with(name, &[("comp", "block"), ("blockid", id)]);
        let md5 = Self::md5_header(&sum);
        let h = [("Content-MD5", md5.as_str())];
        self.caller
            .call(Method::Put, &url, &h, body)
            .await
            .map(drop)
            .map_err(String::from)
    }

    /// The blocks the store holds for `name` uncommitted: (id, size).
    pub async fn uncommitted(&self, name: &str) -> Result<Vec<(String, u64)>, String> {
        let q = [("comp", "blocklist"), ("blocklisttype", "uncommitted")];
        let url = self.az.object_url_with(name, &q);
        let body = match self.caller.call(Method::Get, &url, &[], Bytes::new()).await {
            Ok((_, body)) => body,
            // No blob and no blocks under that name.
            Err(e) if e.is_status(404) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(block_list(&body))
    }

    /// Makes the blob of these blocks, in order, visible whole.
    pub async fn commit(&self, name: &str, ids: &[String]) -> Result<(), String> {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let url = self.az.object_url_with(name, &[("comp", "blocklist")]);
        let h = [("Content-Type", "application/xml")];
        let body = Bytes::from(xml);
        self.caller
            .call(Method::Put, &url, &h, body)
            .await
            .map(drop)
            .map_err(String::from)
    }
}

/// The uncommitted blocks of a Get Block List answer: (id, size).
fn block_list(xml: &[u8]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let (mut id, mut size) = (None, None);
    for (path, v) in leaves(xml).unwrap_or_default() {
        match path.as_str() {
            "BlockList/UncommittedBlocks/Block/Name" => id = Some(v.trim().to_string()),
            "BlockList/UncommittedBlocks/Block/Size" => size = v.trim().parse().ok(),
            "BlockList/UncommittedBlocks/Block" => {
                if let (Some(i), Some(s)) = (id.take(), size.take()) {
                    out.push((i, s));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_the_same_length_and_name_their_content() {
        let a = block_id(0, &[0; 16]);
        let b = block_id(41, &[255; 16]);
        assert_eq!(a.len(), b.len());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&b)
            .unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            format!("000041-{}", "ff".repeat(16))
        );
    }

    #[test]
    fn uncommitted_blocks_as_azure_lists_them() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks/>
<UncommittedBlocks><Block><Name>QQ==</Name><Size>5</Size></Block>
<Block><Size>3</Size><Name>Qg==</Name></Block></UncommittedBlocks></BlockList>"#;
        assert_eq!(
            block_list(xml),
            vec![("QQ==".to_string(), 5), ("Qg==".to_string(), 3)]
        );
        assert!(block_list(b"<BlockList/>").is_empty());
    }
}
