//! A reviewer's decisions about one page (`inkflow review`, `inkflow pick`), as a run obeys
//! them: an approved page is locked, a rejected page is made again, a picked candidate becomes
//! the page, an edited prompt replaces the prompt file's text for that item alone.
//!
//! The journal keeps every decision with its time (and undoes the last one on request); this
//! is what they add up to for the page now.

use super::candidates::History;
use super::item::Item;

/// The fact a page made again after a reviewer rejected candidate N carries: the disk sink
/// keeps that candidate in `rejected/`, whatever the check said of it.
pub const REJECTED_IN_REVIEW_FACT: &str = "rejected_in_review";

/// One decision a reviewer makes about a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewAction {
    /// Locks the page as it is: no re-roll, pick or rerun replaces it.
    Approve,
    /// Has the next run make the page again (a new candidate, paid within the budget).
    Reject,
    /// Makes candidate N the page (from `candidates/` or `rejected/`), paying nothing.
    Pick(u32),
    /// Replaces the item's prompt text (the prompt file is never rewritten).
    Edit(String),
    /// Takes back the page's newest decision.
    Undo,
}

/// What the decisions still in force say about one page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReviewState {
    /// The candidate the reviewer approved: the page is locked as it is.
    pub approved: Option<u32>,
    /// The candidate the reviewer chose as the page.
    pub picked: Option<u32>,
    /// The candidate the reviewer rejected: while it is the page, the page is made again.
    pub rejected: Option<u32>,
    /// The prompt text the reviewer wrote, used instead of the prompt file's.
    pub prompt: Option<String>,
}

impl ReviewState {
    /// Whether nothing was decided (or everything was undone).
    pub fn is_undecided(&self) -> bool {
        *self == ReviewState::default()
    }

    /// Puts the reviewer's prompt on the item before anything reads it (its fingerprint
    /// included, so an edited page is a new page with its own candidates, as an edited
    /// prompt file makes it).
    pub fn amend(&self, item: &mut Item) {
        if let Some(prompt) = &self.prompt {
            item.prompt.image_prompt.clone_from(prompt);
        }
    }

    /// Steers the page's candidate history: an approved or picked candidate is the page (and
    /// ends the search); a rejected page gets a new allowance of candidates, and the first
    /// new one replaces it whatever its verdict. Returns the candidate being replaced because
    /// the reviewer rejected it.
    pub fn steer(&self, history: &mut History) -> Option<u32> {
        if let Some(chosen) = self.approved.or(self.picked) {
            history.picked = Some(chosen);
            return None;
        }
        let rejected = self.rejected?;
        let page = history.picked.or(history.page.as_ref().map(|(number, _)| *number));
        if page != Some(rejected) {
            return None;
        }
        history.picked = None;
        history.page = None;
        history.reopen();
        Some(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::candidates::CandidatePolicy;
    use crate::engine::item::Judgement;

    fn settled_on(page: u32) -> History {
        let pass = Judgement { verdict: "pass".into(), acceptable: true, score: 1.0 };
        History { made: page + 1, page: Some((page, pass)), picked: None, first: 0 }
    }

    #[test]
    fn a_rejected_page_gets_a_new_candidate_that_replaces_it() {
        let policy = CandidatePolicy { best_of: 1, max_rerolls: 0 };
        let mut history = settled_on(1);
        assert!(policy.settled(&history));
        let review = ReviewState { rejected: Some(1), ..ReviewState::default() };
        assert_eq!(review.steer(&mut history), Some(1));
        assert_eq!(policy.next(&history), 2, "a new candidate, never the rejected one again");
        let worse = Judgement { verdict: "reject".into(), acceptable: false, score: 0.0 };
        assert_eq!(history.place(2, Some(&worse)), crate::engine::item::Placement::Page);
    }

    #[test]
    fn a_rejection_is_spent_once_another_candidate_is_the_page() {
        let mut history = settled_on(2);
        let review = ReviewState { rejected: Some(1), ..ReviewState::default() };
        assert_eq!(review.steer(&mut history), None);
        assert_eq!(history, settled_on(2));
    }

    #[test]
    fn an_approval_locks_the_approved_candidate() {
        let policy = CandidatePolicy { best_of: 1, max_rerolls: 3 };
        let mut history = settled_on(0);
        history.page.as_mut().unwrap().1.acceptable = false;
        assert!(policy.wants_another(&history), "a rejected page would be re-rolled");
        let review = ReviewState { approved: Some(0), ..ReviewState::default() };
        review.steer(&mut history);
        assert!(!policy.wants_another(&history));
        assert_eq!(policy.next(&history), 0);
    }
}
