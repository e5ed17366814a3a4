//! The redirect chains of the entries one worker has sent elsewhere. An
//! entry's `hop` handle is 0 until a redirect moves it, then 1 + its slot
//! here; the slot holds every URL it went through, the last being where it
//! is now. Following checks the chain for a loop and for `--max-redirs`.

use crate::error::FetchError;

#[derive(Default)]
pub struct Redirects {
    chains: Vec<Option<Vec<String>>>,
}

impl Redirects {
    /// Where chain `hop` stands now (`None` for 0: not redirected).
    pub fn current(&self, hop: u32) -> Option<&str> {
        let chain = self.chains.get((hop as usize).checked_sub(1)?)?.as_ref()?;
        chain.last().map(String::as_str)
    }

    /// Follows chain `hop` to `to`; `from` is the entry's own URL, used when
    /// `hop` is 0 (its first redirect). The chain's handle, or why not (the
    /// chain is then released).
    pub fn follow(
        &mut self,
        hop: u32,
        from: impl FnOnce() -> String,
        to: String,
        max: u32,
    ) -> Result<u32, FetchError> {
        let mut chain = match hop {
            0 => vec![from()],
            h => self.chains[h as usize - 1].take().expect("a live chain"),
        };
        let show = |chain: &[String]| format!("{} -> {to}", chain.join(" -> "));
        if chain.contains(&to) {
            return Err(FetchError::Redirect(format!("a loop: {}", show(&chain))));
        }
        if chain.len() > max as usize {
            return Err(FetchError::Redirect(format!(
                "more than {max} redirects: {}",
                show(&chain)
            )));
        }
        chain.push(to);
        let slot = match hop {
            0 => match self.chains.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.chains.push(None);
                    self.chains.len() - 1
                }
            },
            h => h as usize - 1,
        };
        self.chains[slot] = Some(chain);
        Ok(slot as u32 + 1)
    }

    /// Releases chain `hop` (nothing for 0 or a released one).
    pub fn free(&mut self, hop: u32) {
        if let Some(c) = (hop as usize)
            .checked_sub(1)
            .and_then(|i| self.chains.get_mut(i))
        {
            *c = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_loops_and_limits() {
        let mut r = Redirects::default();
        let a = r.follow(0, || "u0".into(), "u1".into(), 3).unwrap();
        assert_eq!(r.current(a), Some("u1"));
        let a = r.follow(a, || unreachable!(), "u2".into(), 3).unwrap();
        assert_eq!(r.current(a), Some("u2"));
        let e = r.follow(a, || unreachable!(), "u1".into(), 3).unwrap_err();
        assert_eq!(e.to_string(), "redirect: a loop: u0 -> u1 -> u2 -> u1");
        assert_eq!(r.current(a), None, "a failed chain is released");
        let b = r.follow(0, || "v0".into(), "v1".into(), 1).unwrap();
        assert_eq!(b, a, "the slot is reused");
        let e = r.follow(b, || unreachable!(), "v2".into(), 1).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("redirect: more than 1 redirects: v0 -> v1 -> v2")
        );
        r.free(b);
        r.free(0);
        assert_eq!(r.current(0), None);
    }
}
