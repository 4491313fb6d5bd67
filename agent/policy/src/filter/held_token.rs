//! The token being typed ([`crate::token`]): held whole until it ends, masked past its bounds.

use super::*;

impl Filter {
    /// After a key changed `focus`'s text: is a token still open there?
    pub(super) fn follow_token(&mut self, focus: u64, t: u64) {
        let Some(text) = self.texts.get_mut(&focus) else {
            self.typing = None;
            return;
        };
        if text.open_token().is_none() {
            text.masking = None;
            self.typing = None;
            return;
        }
        let since_ns = match &self.typing {
            Some(ty) if ty.focus == focus => ty.since_ns,
            _ => t,
        };
        self.typing = Some(Typing { focus, since_ns });
    }

    /// The first held record of the open token: the holdback releases nothing from there on
    /// until the token ends. `None` when no token is open or it is already masked.
    pub(super) fn token_hold(&self) -> Option<u64> {
        let ty = self.typing.as_ref()?;
        let text = self.texts.get(&ty.focus)?;
        if text.masking.is_some() {
            return None;
        }
        let r = text.open_token()?;
        text.chars[r]
            .iter()
            .flat_map(|c| c.ids.iter().copied())
            .min()
    }

    /// True when the open token has outgrown what may be held (see [`token`]'s bounds).
    pub(super) fn token_over_bound(&self) -> bool {
        let Some(ty) = &self.typing else {
            return false;
        };
        let Some(text) = self.texts.get(&ty.focus) else {
            return false;
        };
        if text.masking.is_some() {
            return false;
        }
        let chars = text.open_token().map_or(0, |r| r.len());
        chars > token::MAX_CHARS
            || self.newest_ns.saturating_sub(ty.since_ns) > token::MAX_OPEN_MS * 1_000_000
            || self.queue.len() > token::MAX_HELD_RECORDS
    }

    /// Fail closed: the open token's keys become a `holdback_full` redaction, and so do its
    /// further chars until it ends.
    pub(super) fn mask_token(&mut self) {
        let Some(focus) = self.typing.as_ref().map(|t| t.focus) else {
            return;
        };
        let Some(r) = self.texts.get(&focus).and_then(|t| t.open_token()) else {
            return;
        };
        if let Some(g) = self.redact_span(focus, "holdback_full", r.start, r.end) {
            self.stats.holdback_masked += 1;
            if let Some(t) = self.texts.get_mut(&focus) {
                t.masking = Some(g);
            }
        }
    }

    /// A click moves the caret somewhere unknown: it ends the token being typed.
    pub(super) fn end_token_by_click(&mut self) {
        if let Some(ty) = self.typing.take() {
            if let Some(t) = self.texts.get_mut(&ty.focus) {
                t.moved();
            }
        }
    }
}
