//! The one XML walk under every store answer bulkget reads (S3's
//! ListObjectsV2 and multipart answers, Azure's List Blobs): quick-xml
//! events folded into one call per element at its end, with the names of
//! the elements around it and its text, entities resolved.

use quick_xml::events::Event;

/// One element, handed on at its end.
pub struct El<'a> {
    /// The names of the elements it is inside, outermost first.
    pub path: &'a [Vec<u8>],
    pub name: &'a [u8],
    /// Its text (for an element with children: what follows the last one).
    pub text: &'a str,
    /// It carried `Encoded="true"` (Azure's mark of a percent-encoded name).
    pub encoded: bool,
}

impl El<'_> {
    /// The element it is inside.
    pub fn parent(&self) -> Option<&[u8]> {
        self.path.last().map(Vec::as_slice)
    }
}

/// Calls `f` for every element of `xml`, at its end; stops at the first
/// error, of the XML or of `f`.
pub fn walk(xml: &[u8], mut f: impl FnMut(El<'_>) -> Result<(), String>) -> Result<(), String> {
    let mut r = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut encoded: Vec<bool> = Vec::new();
    let mut text = String::new();
    loop {
        match r.read_event() {
            Err(e) => return Err(format!("not XML: {e}")),
            Ok(Event::Eof) => return Ok(()),
            Ok(Event::Start(e)) => {
                path.push(e.local_name().as_ref().to_vec());
                encoded.push(
                    e.attributes()
                        .flatten()
                        .any(|a| a.key.as_ref() == b"Encoded" && a.value.as_ref() == b"true"),
                );
                text.clear();
            }
            Ok(Event::Text(t)) => text.push_str(&t.decode().map_err(|e| format!("not XML: {e}"))?),
            Ok(Event::GeneralRef(g)) => {
                text.push(entity(g.as_ref()).ok_or("an unknown XML entity")?)
            }
            Ok(Event::End(_)) => {
                let name = path.pop().unwrap_or_default();
                let enc = encoded.pop().unwrap_or(false);
                f(El {
                    path: &path,
                    name: &name,
                    text: &text,
                    encoded: enc,
                })?;
                text.clear();
            }
            Ok(_) => {}
        }
    }
}

/// The character an XML entity (`amp`, `#38`, `#x26`, …) stands for.
fn entity(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        _ => {
            let n = std::str::from_utf8(name.strip_prefix(b"#")?).ok()?;
            let v = match n.strip_prefix('x') {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(v)?
        }
    })
}
