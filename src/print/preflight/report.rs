//! What preflight says: each rule's verdict with the pages that break it, and the report of
//! every rule checked on one file.

use std::fmt;

use super::Unchecked;
use crate::print::{Paper, Trim};

/// What the file is checked against; `None` means "as the file says".
#[derive(Clone, Copy, Debug, Default)]
pub struct Target {
    pub trim: Option<Trim>,
    pub bleed: Option<bool>,
    pub paper: Paper,
}

/// One rule's verdict.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: &'static str,
    /// Nothing checked breaks it.
    pub passed: bool,
    /// What was found; for a failure, what is wrong.
    pub detail: String,
    /// The pages that break it, from 1.
    pub pages: Vec<usize>,
    /// The pages it could not be checked on (their content is over a limit), from 1, and why.
    pub unchecked: Vec<usize>,
    pub unchecked_why: String,
}

impl Rule {
    /// Checked on every page, and passed.
    pub fn holds(&self) -> bool {
        self.passed && self.unchecked.is_empty()
    }
}

/// Every rule checked on one file.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    /// The file's page count.
    pub pages: usize,
    pub rules: Vec<Rule>,
}

impl Report {
    /// Every rule checked on every page and passed: a rule that could not be checked is no pass.
    pub fn passed(&self) -> bool {
        self.rules.iter().all(Rule::holds)
    }

    /// One line for a summary: "KDP preflight: all 11 rules pass", or the names of the rules
    /// that failed and of those that could not be checked.
    pub fn verdict(&self) -> String {
        let failed: Vec<&str> = self.rules.iter().filter(|r| !r.passed).map(|r| r.name).collect();
        let unchecked: Vec<&str> =
            self.rules.iter().filter(|r| r.passed && !r.unchecked.is_empty()).map(|r| r.name).collect();
        let total = self.rules.len();
        let mut verdict = format!("KDP preflight of {}: ", self.title);
        if failed.is_empty() && unchecked.is_empty() {
            verdict += &format!("all {total} rules pass");
        }
        if !failed.is_empty() {
            verdict += &format!("{} of {total} rules fail ({})", failed.len(), failed.join(", "));
        }
        if !unchecked.is_empty() {
            verdict += if failed.is_empty() { "" } else { "; " };
            verdict += &format!(
                "{} of {total} rules could not check every page ({}): over a preflight limit",
                unchecked.len(),
                unchecked.join(", ")
            );
        }
        verdict
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "preflight {}", self.title)?;
        for rule in &self.rules {
            let mark = match (rule.passed, rule.unchecked.is_empty()) {
                (false, _) => "✗",
                (true, false) => "?",
                (true, true) => "✓",
            };
            write!(f, "{mark} {}: {}", rule.name, rule.detail)?;
            if !rule.pages.is_empty() {
                write!(f, " (pages {})", page_list(&rule.pages))?;
            }
            if !rule.unchecked.is_empty() {
                write!(f, "; could not check pages {}: {}", page_list(&rule.unchecked), rule.unchecked_why)?;
            }
            writeln!(f)?;
        }
        write!(f, "{}", self.verdict())
    }
}

/// "1-3, 7, 9-10", at most a dozen ranges.
pub(super) fn page_list(pages: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &page in pages {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == page => *end = page,
            _ => ranges.push((page, page)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(12)
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    let more = if ranges.len() > 12 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

pub(super) fn rule(
    name: &'static str,
    pages: Vec<usize>,
    ok: String,
    bad: impl FnOnce(&[usize]) -> String,
) -> Rule {
    let passed = pages.is_empty();
    let detail = if passed { ok } else { bad(&pages) };
    Rule { name, passed, detail, pages, unchecked: Vec::new(), unchecked_why: String::new() }
}

pub(super) fn fact(name: &'static str, passed: bool, detail: String) -> Rule {
    Rule { name, passed, detail, pages: Vec::new(), unchecked: Vec::new(), unchecked_why: String::new() }
}

impl Rule {
    /// The rule reads the pages' content: the pages whose content is over a limit are ones it
    /// could not check.
    pub(super) fn on_content(mut self, unchecked: &Unchecked) -> Rule {
        self.unchecked = unchecked.pages.clone();
        self.unchecked_why = unchecked.why.clone();
        self
    }
}
