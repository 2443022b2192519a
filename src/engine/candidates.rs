//! Candidates of a page. A judging stage (such as `lineart-check`) may ask for more than one
//! generation of a page: again with a new seed when it rejects one (re-rolls), or N of them to
//! keep the best. The batch then runs in rounds: after each one, the items that want another
//! candidate run again, as candidate 1, 2, ...; generators make candidate N deterministically
//! (a seed derived from it, or the N-th image of one request), so asking again is served from
//! the raw cache. The best candidate so far is the page; every other one is kept aside.
//!
//! A page that wants no more candidates is settled: a later run never makes a new one of it
//! (a run that must write it again, because a sink lacks its outputs, makes its page again,
//! which the raw cache serves for nothing). Only a pick, a reopening (`--retry-failed` for a
//! page left without an acceptable candidate, later a review decision) or an edited prompt
//! (a new fingerprint, so a new history) makes it again.

use super::item::{Judgement, Placement};

/// How many candidates a page may get, as the judging stage's options say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandidatePolicy {
    /// Candidates made for every page; the best becomes the page.
    pub best_of: u32,
    /// Further candidates, one at a time, while the best so far is unacceptable.
    pub max_rerolls: u32,
}

impl CandidatePolicy {
    /// The most candidates a page gets.
    pub fn limit(&self) -> u32 {
        self.best_of.max(1) + self.max_rerolls
    }

    /// Whether a page with `history` wants another candidate: only candidates made since the
    /// page was last (re)opened count against the limit.
    pub fn wants_another(&self, history: &History) -> bool {
        let made = history.made.saturating_sub(history.first);
        if history.picked.is_some() || made >= self.limit() {
            return false;
        }
        made < self.best_of || !history.has_acceptable_page()
    }

    /// Whether the page is settled: it has candidates and wants no more.
    pub fn settled(&self, history: &History) -> bool {
        history.made > 0 && !self.wants_another(history)
    }

    /// Whether the page settled without an acceptable candidate (and none was picked): what
    /// `--retry-failed` makes again, as it does a failed item.
    pub fn settled_unacceptable(&self, history: &History) -> bool {
        self.settled(history) && history.picked.is_none() && !history.has_acceptable_page()
    }

    /// The candidate a run of the page makes: the one the user picked; while the page wants
    /// another, a new one; once it is settled, its page again (a sink lacked its outputs),
    /// which costs nothing, never a new candidate.
    pub fn next(&self, history: &History) -> u32 {
        match (history.picked, &history.page) {
            (Some(picked), _) => picked,
            (None, Some((page, _))) if !self.wants_another(history) => *page,
            (None, _) => history.made,
        }
    }
}

/// What is known of one page's candidates, from the journal and this run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Candidates made so far (judged, or failed): the next one is number `made`.
    pub made: u32,
    /// The candidate that is the page, with its judgement.
    pub page: Option<(u32, Judgement)>,
    /// A candidate the user chose (`inkflow pick`): it is the page, whatever its judgement.
    pub picked: Option<u32>,
    /// The first candidate of the page's current allowance: those before it were made before
    /// the page was reopened ([`History::reopen`]) and no longer count against the limit.
    pub first: u32,
}

impl History {
    /// Where candidate `number`, judged `judgement`, goes: the page when it is the chosen one,
    /// the first, or better than the page so far.
    pub fn place(&self, number: u32, judgement: Option<&Judgement>) -> Placement {
        if let Some(picked) = self.picked {
            return if picked == number { Placement::Page } else { Placement::SetAside };
        }
        match (&self.page, judgement) {
            (None, _) | (_, None) => Placement::Page,
            (Some((page, _)), _) if *page == number => Placement::Page,
            (Some((_, best)), Some(judgement)) if judgement.beats(best) => Placement::Page,
            _ => Placement::SetAside,
        }
    }

    /// Records candidate `number`'s end: judged and placed, or failed (`judgement` none).
    /// Returns whether it was a new candidate (not a settled or picked page made again).
    pub fn record(&mut self, number: u32, judgement: Option<&Judgement>, placement: Placement) -> bool {
        let new = number >= self.made;
        self.made = self.made.max(number + 1);
        if let (Placement::Page, Some(judgement)) = (placement, judgement) {
            self.page = Some((number, judgement.clone()));
        }
        new
    }

    /// Gives a settled page a new allowance of candidates, counted from the next one: the
    /// earlier candidates stay (the best of them stays the page until a better one comes).
    pub fn reopen(&mut self) {
        self.first = self.made;
    }

    fn has_acceptable_page(&self) -> bool {
        self.page.as_ref().is_some_and(|(_, best)| best.acceptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(verdict: &str, acceptable: bool, score: f64) -> Judgement {
        Judgement { verdict: verdict.into(), acceptable, score }
    }

    #[test]
    fn a_rejected_page_wants_rerolls_until_one_passes_or_the_limit() {
        let policy = CandidatePolicy { best_of: 1, max_rerolls: 2 };
        let mut history = History::default();
        assert!(policy.wants_another(&history), "nothing made yet");
        let bad = judged("reject", false, 0.5);
        history.record(0, Some(&bad), history.place(0, Some(&bad)));
        assert!(policy.wants_another(&history));
        let worse = judged("reject", false, 0.2);
        assert_eq!(history.place(1, Some(&worse)), Placement::SetAside, "the page keeps the better one");
        history.record(1, Some(&worse), Placement::SetAside);
        assert_eq!(history.page.as_ref().map(|(n, _)| *n), Some(0));
        assert!(policy.wants_another(&history), "one re-roll left");
        let good = judged("pass", true, 0.1);
        assert_eq!(history.place(2, Some(&good)), Placement::Page, "acceptable beats any rejected one");
        history.record(2, Some(&good), Placement::Page);
        assert!(!policy.wants_another(&history));
        assert_eq!(policy.next(&history), 2, "a settled page is made again as its page, never anew");
    }

    #[test]
    fn a_page_rejected_to_the_limit_is_settled_until_reopened() {
        let policy = CandidatePolicy { best_of: 1, max_rerolls: 1 };
        let bad = judged("reject", false, 0.5);
        let mut history = History::default();
        for number in 0..2 {
            assert_eq!(policy.next(&history), number);
            assert!(history.record(number, Some(&bad), history.place(number, Some(&bad))));
        }
        assert!(policy.settled_unacceptable(&history));
        assert_eq!(policy.next(&history), 0, "the page again, not candidate 2");
        assert!(!history.record(0, Some(&bad), Placement::Page), "the page made again is no new candidate");
        assert!(policy.settled(&history) && history.made == 2);

        history.reopen();
        assert!(!policy.settled(&history));
        assert_eq!(policy.next(&history), 2, "a reopened page gets new candidates");
        history.record(2, Some(&bad), Placement::SetAside);
        assert!(policy.wants_another(&history), "a whole new allowance: 2 of them");
        history.record(3, Some(&bad), Placement::SetAside);
        assert!(policy.settled_unacceptable(&history));
        assert_eq!(policy.next(&history), 0);
    }

    #[test]
    fn best_of_makes_every_candidate_even_after_a_pass() {
        let policy = CandidatePolicy { best_of: 3, max_rerolls: 0 };
        let mut history = History::default();
        let pass = judged("pass", true, 2.0);
        history.record(0, Some(&pass), Placement::Page);
        assert!(policy.wants_another(&history));
        history.record(1, None, Placement::SetAside);
        assert!(policy.wants_another(&history), "a failed candidate counts as made");
        history.record(2, Some(&pass), history.place(2, Some(&pass)));
        assert!(!policy.wants_another(&history));
        assert_eq!(history.page.as_ref().map(|(n, _)| *n), Some(0), "a tie keeps the earlier page");
    }

    #[test]
    fn a_pick_is_the_page_and_ends_the_search() {
        let policy = CandidatePolicy { best_of: 1, max_rerolls: 5 };
        let history =
            History { made: 3, page: Some((2, judged("pass", true, 2.0))), picked: Some(0), first: 0 };
        assert!(!policy.wants_another(&history) && !policy.settled_unacceptable(&history));
        assert_eq!(policy.next(&history), 0);
        assert_eq!(history.place(0, Some(&judged("reject", false, 0.0))), Placement::Page);
        assert_eq!(history.place(2, Some(&judged("pass", true, 2.0))), Placement::SetAside);
    }
}
