//! Renders a page file of the report as one self-contained HTML page: no network, no framework,
//! thumbnails by relative path, a little CSS (a grid on screen, a contact sheet on paper) and a
//! few lines of JS for the filters (without JS every card shows).

use std::fmt::Write as _;

use serde_json::Value;

use super::REPORT_FILE;
use super::gather::{CARDS_PER_PAGE, Card, Overview, PageSummary};

const STYLE: &str = "\
body{font:1rem/1.4 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:80rem;color:#111;background:#fff}\
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.3rem;margin:1.5rem 0 .5rem}h3{font-size:1rem;margin:.3rem 0;overflow-wrap:anywhere}\
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.5rem;margin:0}\
dl.facts div{border:1px solid #ccc;border-radius:.3rem;padding:.4rem}dt{font-size:.85rem;color:#444}dd{margin:0;font-weight:600}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}\
.filters button{font:inherit;padding:.3rem .7rem;margin:0 .3rem .3rem 0;border:1px solid #555;border-radius:.3rem;background:#fff;cursor:pointer}\
.filters button[aria-pressed=true]{background:#222;color:#fff}\
ol.grid{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.8rem}\
.card{border:1px solid #bbb;border-radius:.4rem;padding:.5rem;break-inside:avoid}.card[hidden]{display:none}\
.card img{display:block;width:100%;height:auto;aspect-ratio:400/518;object-fit:contain;background:#f4f4f4}\
.card p{margin:.2rem 0;font-size:.9rem;overflow-wrap:anywhere}.card ul{margin:.2rem 0;padding-left:1.1rem;font-size:.85rem}\
.nopage{display:flex;align-items:center;justify-content:center;aspect-ratio:400/518;background:#f4f4f4;color:#444}\
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600;font-size:.8rem;border:1px solid #555}\
.b-pass,.b-written{background:#dfd}.b-warn{background:#ffe8a8}.b-reject,.b-failed{background:#fcc}.b-filtered{background:#ddd}\
.msg{color:#900}a{color:#0645ad}.files li.look{font-weight:600}\
@media print{.filters,.files,.links,details{display:none}body{max-width:none;padding:0;font-size:9pt}\
ol.grid{grid-template-columns:repeat(4,1fr);gap:4pt}.card{padding:2pt;border-color:#999}.card[hidden]{display:block}a{color:inherit;text-decoration:none}}";

const SCRIPT: &str = "\
var b=document.querySelectorAll('[data-show]');document.querySelector('.filters').hidden=false;\
b.forEach(function(x){x.onclick=function(){var f=x.dataset.show;b.forEach(function(o){o.setAttribute('aria-pressed',o===x)});\
document.querySelectorAll('.card').forEach(function(c){c.hidden=f!=='all'&&c.dataset.tags.split(' ').indexOf(f)<0})}});";

/// The filters and the card tags they show.
const FILTERS: [(&str, &str); 4] =
    [("all", "All"), ("failed", "Failed or filtered"), ("warn", "Warn"), ("reject", "Reject")];

/// One page file: the batch, the list of page files when there are several, the failed and
/// filtered items and this page's cards.
pub fn render(overview: &Overview, page: usize, cards: &[Card]) -> String {
    let mut out = String::with_capacity(4096 + cards.len() * 700);
    let title = match overview.pages.len() {
        1 => format!("inkflow report: {}", overview.output_dir),
        pages => format!("inkflow report: {} (page {} of {pages})", overview.output_dir, page + 1),
    };
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><header><h1>Batch report</h1><p>{}</p></header><main>",
        esc(&title),
        esc(&overview.output_dir)
    );
    batch_section(&mut out, overview);
    pages_nav(&mut out, overview, page);
    failures_section(&mut out, overview, page, cards);
    pages_section(&mut out, &overview.pages[page], cards);
    let _ = writeln!(out, "</main><script>{SCRIPT}</script></body></html>");
    out
}

/// The file name of page file `page` (from 0): `report.html`, then `report-2.html`...
pub fn page_file(page: usize) -> String {
    match page {
        0 => REPORT_FILE.to_owned(),
        page => crate::engine::output_path::report_page_file(page + 1),
    }
}

fn batch_section(out: &mut String, report: &Overview) {
    let total: u64 = report.states.values().sum();
    let mut facts: Vec<(String, String)> = vec![("Items".into(), total.to_string())];
    for (state, count) in &report.states {
        facts.push((capitalised(state), count.to_string()));
    }
    let summary = report.facts.summary.as_ref();
    let number = |name: &str| summary.and_then(|s| s.get(name)).and_then(Value::as_f64);
    if let Some(seconds) = number("elapsed_seconds") {
        facts.push(("Time (last run)".into(), format!("{seconds:.1} s")));
    }
    if let Some(rate) = number("items_per_second") {
        facts.push(("Throughput (last run)".into(), format!("{rate:.2} items/s")));
    }
    if let Some(retries) = number("retries") {
        facts.push(("Retries (last run)".into(), format!("{retries}")));
    }
    facts.push(("Spent".into(), dollars(report.spent_usd)));
    facts.push((
        "Estimated".into(),
        report.facts.estimate_usd.map_or_else(|| "unknown (inkflow report --pipeline FILE)".into(), dollars),
    ));
    facts.push(("Budget".into(), report.facts.budget_usd.map_or_else(|| "none set".into(), dollars)));
    if let Some(spread) = &report.difficulty {
        facts.push(("Difficulty".into(), spread.clone()));
    }
    out.push_str("<section aria-labelledby=\"batch\"><h2 id=\"batch\">Batch</h2><dl class=\"facts\">");
    for (name, value) in &facts {
        let _ = write!(out, "<div><dt>{}</dt><dd>{}</dd></div>", esc(name), esc(value));
    }
    out.push_str("</dl>");
    let stopped = summary.and_then(|s| s.get("stop_reason")).and_then(Value::as_str);
    if let Some(reason) = stopped {
        let _ = write!(out, "<p class=\"msg\">The last run stopped early: {}</p>", esc(reason));
    }
    if !report.spent_by_model.is_empty() {
        out.push_str("<h3>Spend by model</h3><table><thead><tr><th scope=\"col\">Model</th><th scope=\"col\">Spent</th></tr></thead><tbody>");
        for (model, usd) in &report.spent_by_model {
            let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(model), dollars(*usd));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

/// On `report.html` of a batch in several files, the page files with the items each holds and
/// how many need a look; on the others, the way back to it and to the neighbours.
fn pages_nav(out: &mut String, overview: &Overview, page: usize) {
    let pages = &overview.pages;
    if pages.len() == 1 {
        return;
    }
    out.push_str("<nav aria-labelledby=\"files\" class=\"files\"><h2 id=\"files\">Pages of this report</h2>");
    if page > 0 {
        let _ = write!(
            out,
            "<p>This is page {} of {}: <a href=\"{}\">back to the first</a>",
            page + 1,
            pages.len(),
            page_file(0)
        );
        if page > 1 {
            let _ = write!(out, " · <a href=\"{}\" rel=\"prev\">previous</a>", page_file(page - 1));
        }
        if page + 1 < pages.len() {
            let _ = write!(out, " · <a href=\"{}\" rel=\"next\">next</a>", page_file(page + 1));
        }
        out.push_str("</p></nav>");
        return;
    }
    let _ = write!(
        out,
        "<p>{} items in {} files of up to {CARDS_PER_PAGE} cards, in book order; the counts say where to look.</p><ol>",
        pages.iter().map(|p| p.cards).sum::<u64>(),
        pages.len()
    );
    for (number, summary) in pages.iter().enumerate() {
        let range = format!("items {}–{}", summary.first, summary.first + summary.cards.saturating_sub(1));
        let link = if number == page {
            format!("<a href=\"{}\" aria-current=\"page\">{range}</a>", page_file(number))
        } else {
            format!("<a href=\"{}\">{range}</a>", page_file(number))
        };
        let counts: Vec<String> = FILTERS[1..]
            .iter()
            .filter_map(|(tag, label)| {
                summary.tagged.get(*tag).map(|n| format!("{n} {}", label.to_lowercase()))
            })
            .collect();
        let _ = if counts.is_empty() {
            write!(out, "<li>{link}</li>")
        } else {
            write!(out, "<li class=\"look\">{link}: {}</li>", counts.join(", "))
        };
    }
    out.push_str("</ol></nav>");
}

/// The failed and filtered items: on `report.html` the batch's first ones, wherever their cards
/// are; on the other page files, those of the page.
fn failures_section(out: &mut String, overview: &Overview, page: usize, cards: &[Card]) {
    let listed: Vec<(&Card, usize)> = if page == 0 {
        overview.problems.iter().map(|problem| (&problem.card, problem.page)).collect()
    } else {
        cards.iter().filter(|c| c.is_failed()).map(|card| (card, page)).collect()
    };
    out.push_str("<section aria-labelledby=\"failures\"><h2 id=\"failures\">Failed and filtered</h2>");
    if listed.is_empty() {
        out.push_str("<p>None.</p></section>");
        return;
    }
    out.push_str("<ul class=\"failures\">");
    for (card, on_page) in &listed {
        let file = if *on_page == page { String::new() } else { page_file(*on_page) };
        let _ = write!(
            out,
            "<li><a href=\"{file}#{}\">{}</a> {} at {}: <span class=\"msg\">{}</span></li>",
            card_id(card),
            esc(&card.key),
            esc(&card.state),
            esc(card.stage.as_deref().unwrap_or("?")),
            esc(card.message.as_deref().unwrap_or("no message"))
        );
    }
    out.push_str("</ul>");
    let unlisted = overview.problem_count.saturating_sub(listed.len() as u64);
    if page == 0 && unlisted > 0 {
        let _ = write!(
            out,
            "<p>And {unlisted} more, listed on their own page files (see the counts under “Pages of this report”).</p>"
        );
    }
    out.push_str("</section>");
}

fn pages_section(out: &mut String, summary: &PageSummary, cards: &[Card]) {
    out.push_str("<section aria-labelledby=\"pages\"><h2 id=\"pages\">Pages</h2>");
    out.push_str("<div class=\"filters\" role=\"group\" aria-label=\"Show\" hidden>");
    for (tag, label) in FILTERS {
        let count = if tag == "all" { summary.cards } else { summary.tagged.get(tag).copied().unwrap_or(0) };
        let _ = write!(
            out,
            "<button type=\"button\" data-show=\"{tag}\" aria-pressed=\"{}\">{label} ({count})</button>",
            tag == "all"
        );
    }
    let _ = write!(out, "</div><ol class=\"grid\" start=\"{}\">", summary.first);
    for card in cards {
        card_html(out, card);
    }
    out.push_str("</ol></section>");
}

fn card_html(out: &mut String, card: &Card) {
    let _ =
        write!(out, "<li class=\"card\" id=\"{}\" data-tags=\"{}\">", card_id(card), card.tags().join(" "));
    match (&card.thumbnail, &card.page) {
        (Some(thumb), Some(page)) => {
            let _ = write!(
                out,
                "<a href=\"{}\"><img src=\"{}\" alt=\"Page: {}\" loading=\"lazy\"></a>",
                url(page),
                url(thumb),
                esc(&card.description)
            );
        }
        _ => out.push_str("<div class=\"nopage\">no page</div>"),
    }
    let _ = write!(out, "<h3>{}</h3><p>{}</p>", esc(&card.name), esc(&card.description));
    let _ = write!(out, "<p><span class=\"badge b-{0}\">{0}</span>", esc(&card.state));
    if let Some(verdict) = &card.verdict {
        let _ = write!(
            out,
            " <span class=\"badge b-{}\">quality: {}</span>",
            esc(&verdict.to_lowercase()),
            esc(verdict)
        );
    }
    out.push_str("</p>");
    if card.is_failed()
        && let Some(message) = &card.message
    {
        let stage = card.stage.as_deref().unwrap_or("?");
        let _ = write!(out, "<p class=\"msg\">{}: {}</p>", esc(stage), esc(message));
    }
    if !card.problems.is_empty() {
        out.push_str("<ul aria-label=\"Problems\">");
        for problem in &card.problems {
            let _ = write!(out, "<li>{}</li>", esc(problem));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<p>retries {} · attempts {} · {}</p>",
        card.retries,
        card.attempts,
        dollars(card.cost_usd)
    );
    let links: Vec<String> = [("page", &card.page), ("metadata", &card.metadata)]
        .into_iter()
        .filter_map(|(label, path)| path.as_ref().map(|p| format!("<a href=\"{}\">{label}</a>", url(p))))
        .collect();
    if !links.is_empty() {
        let _ = write!(out, "<p class=\"links\">{}</p>", links.join(" · "));
    }
    for (label, files) in [("Candidates", &card.candidates), ("Rejected", &card.rejected)] {
        if files.is_empty() {
            continue;
        }
        let _ = write!(out, "<details><summary>{label} ({})</summary><ul>", files.len());
        for file in files {
            let name = file.rsplit('/').next().unwrap_or(file);
            let _ = write!(out, "<li><a href=\"{}\">{}</a></li>", url(file), esc(name));
        }
        out.push_str("</ul></details>");
    }
    out.push_str("</li>");
}

fn card_id(card: &Card) -> String {
    let safe: String = card
        .key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("item-{safe}")
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

fn dollars(usd: f64) -> String {
    format!("${usd:.3}")
}

/// Text made safe for HTML content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as a URL: every byte but unreserved ones and `/` percent-encoded, so a name
/// with `#`, `?`, `%`, `:` or spaces stays a relative file link.
pub fn url(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
