//! The review page: one card per item, as the static report shows them (its cards, its
//! escaping), with the reviewer's actions. Cards are rendered once on the server; the script
//! only moves the selection, filters and sends decisions, so 1,000 cards stay responsive
//! (`content-visibility` skips laying out cards off screen, thumbnails load lazily).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::engine::review::ReviewState;
use crate::report::{Card, esc, url};

/// The page for `cards`, with the decisions in force per key and the newest decision's id
/// (sent back with the next action, so two reviewers never overwrite each other unknowingly),
/// and the book's difficulty spread when its pages were measured.
pub fn render(
    title: &str,
    cards: &[Card],
    decisions: &HashMap<String, (ReviewState, Option<i64>)>,
    difficulty: Option<&str>,
) -> String {
    let mut codes: Vec<&str> = cards.iter().flat_map(|c| c.problems.iter().map(String::as_str)).collect();
    codes.sort_unstable();
    codes.dedup();
    let mut html = String::with_capacity(1_024 + cards.len() * 1_200);
    let _ = write!(
        html,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Review {title}</title><style>{STYLE}</style></head><body>\
         <header><h1>Review {title}</h1><p id=banner role=status></p>{difficulty}\
         <nav id=filters><button data-filter=all class=on>all</button><button data-filter=undecided>undecided</button>\
         <button data-filter=reject>rejected by the check</button><button data-filter=failed>failed</button>",
        title = esc(title),
        difficulty =
            difficulty.map(|d| format!("<p id=difficulty>Difficulty: {}</p>", esc(d))).unwrap_or_default()
    );
    for code in codes {
        let _ = write!(html, "<button data-filter=\"p-{c}\">{c}</button>", c = esc(code));
    }
    html.push_str(
        "</nav><p id=runbar><button id=plan>Run the pending decisions…</button> <span id=plantext></span></p>\
         <pre id=log hidden></pre><p class=keys>j/k next/previous · a approve · r reject · u undo · \
         e edit the prompt · z zoom · Esc close</p></header><main id=cards>",
    );
    for (index, card) in cards.iter().enumerate() {
        let (state, last) = decisions.get(&card.key).cloned().unwrap_or_default();
        card_html(&mut html, index, card, &state, last);
    }
    html.push_str("</main><div id=zoom hidden><img alt=\"\"></div><script>");
    html.push_str(SCRIPT);
    html.push_str("</script></body></html>");
    html
}

fn card_html(html: &mut String, index: usize, card: &Card, state: &ReviewState, last: Option<i64>) {
    let mut tags = card.tags();
    tags.extend(card.problems.iter().map(|p| format!("p-{p}")));
    if state.is_undecided() && !card.is_failed() {
        tags.push("undecided".into());
    }
    let _ = write!(
        html,
        "<article class=card id=c{index} data-key=\"{key}\" data-last=\"{last}\" data-tags=\"{tags}\">",
        key = esc(&card.key),
        last = last.map(|l| l.to_string()).unwrap_or_default(),
        tags = esc(&tags.join(" ")),
    );
    match (&card.thumbnail, &card.page) {
        (Some(thumb), Some(page)) => {
            let _ = write!(
                html,
                "<a class=zoom href=\"files/{page}\"><img loading=lazy decoding=async src=\"files/{thumb}\" alt=\"\"></a>",
                page = esc(&url(page)),
                thumb = esc(&url(thumb))
            );
        }
        (None, Some(page)) => {
            let _ = write!(
                html,
                "<a class=zoom href=\"files/{page}\"><img loading=lazy decoding=async src=\"files/{page}\" alt=\"\"></a>",
                page = esc(&url(page))
            );
        }
        _ => html.push_str("<div class=nothumb>no page</div>"),
    }
    let verdict = card.verdict.as_deref().map(|v| format!(" · {}", esc(v))).unwrap_or_default();
    let problems = if card.problems.is_empty() {
        String::new()
    } else {
        format!(" · {}", esc(&card.problems.join(", ")))
    };
    let _ = write!(
        html,
        "<h2>{name}</h2><p>{description}</p><p class=state>{s}{verdict}{problems}</p><p class=decision>{decision}</p>",
        name = esc(&card.name),
        description = esc(&card.description),
        s = esc(&card.state),
        decision = esc(&describe(state)),
    );
    html.push_str(
        "<div class=actions><button data-act=approve>approve</button><button data-act=reject>reject</button>\
         <button data-act=undo>undo</button>",
    );
    let others: Vec<(u32, &str)> = card
        .candidates
        .iter()
        .chain(&card.rejected)
        .filter_map(|path| Some((candidate_number(path)?, path.as_str())))
        .collect();
    if !others.is_empty() {
        html.push_str("<select class=pick>");
        for (number, path) in others {
            let _ = write!(html, "<option value={number}>candidate {number} ({})</option>", esc(path));
        }
        html.push_str("</select><button data-act=pick>pick</button>");
    }
    let _ = write!(
        html,
        "<details><summary>edit the prompt</summary><textarea rows=3>{}</textarea>\
         <button data-act=edit>save the prompt</button></details></div><p class=error role=alert></p></article>",
        esc(state.prompt.as_deref().unwrap_or(&card.description))
    );
}

/// The decisions in force, in words.
pub fn describe(state: &ReviewState) -> String {
    let mut said = Vec::new();
    if let Some(n) = state.approved {
        said.push(format!("approved (candidate {n}, locked)"));
    }
    if let Some(n) = state.rejected {
        said.push(format!("rejected (candidate {n}): made again by the next run"));
    }
    if let Some(n) = state.picked {
        said.push(format!("picked candidate {n}"));
    }
    if state.prompt.is_some() {
        said.push("prompt edited".to_owned());
    }
    if said.is_empty() { "undecided".to_owned() } else { said.join("; ") }
}

/// The N of a kept candidate's file, `rejected/STEM.cN.png`.
fn candidate_number(path: &str) -> Option<u32> {
    let stem = path.rsplit('/').next()?.rsplit_once('.')?.0;
    stem.rsplit_once(".c")?.1.parse().ok()
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;background:#f6f6f6}\
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.5em 1em;z-index:2}\
h1{font-size:1.2em;margin:0}#banner:empty{display:none}#banner{background:#fde68a;padding:.4em}\
#filters button.on{font-weight:bold;text-decoration:underline}.keys{color:#555;margin:.2em 0}\
#log{max-height:10em;overflow:auto;background:#111;color:#eee;padding:.5em}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:.8em;padding:1em}\
.card{background:#fff;border:2px solid #ddd;padding:.5em;content-visibility:auto;contain-intrinsic-size:auto 420px}\
.card.sel{border-color:#2563eb}.card img{width:100%;aspect-ratio:17/22;object-fit:contain;background:#fff}\
.card h2{font-size:1em;margin:.3em 0}.card p{margin:.2em 0}.decision{font-weight:bold}.error{color:#b91c1c}\
.hidden{display:none}body.readonly .actions{opacity:.4;pointer-events:none}\
#zoom{position:fixed;inset:0;background:#000c;display:flex;align-items:center;justify-content:center;z-index:3}\
#zoom[hidden]{display:none}#zoom img{max-width:98vw;max-height:98vh;background:#fff}";

const SCRIPT: &str = r#"
const cards=[...document.querySelectorAll('.card')];let sel=0,readonly=false;
const visible=()=>cards.filter(c=>!c.classList.contains('hidden'));
function select(c){if(!c)return;cards[sel]&&cards[sel].classList.remove('sel');sel=cards.indexOf(c);c.classList.add('sel');c.scrollIntoView({block:'nearest'});}
function move(d){const v=visible();if(!v.length)return;let i=v.indexOf(cards[sel]);i=i<0?0:Math.max(0,Math.min(v.length-1,i+d));select(v[i]);}
async function act(card,action,value){
  const err=card.querySelector('.error');err.textContent='';
  if(readonly){err.textContent=document.getElementById('banner').textContent;return;}
  const last=card.dataset.last;
  const r=await fetch('api/decide',{method:'POST',headers:{'content-type':'application/json'},
    body:JSON.stringify({key:card.dataset.key,action,value,expected:last===''?null:Number(last)})});
  const j=await r.json();
  if(!r.ok){err.textContent=j.error;return;}
  card.dataset.last=j.last===null?'':j.last;card.querySelector('.decision').textContent=j.said;
  const tags=new Set(card.dataset.tags.split(' '));j.undecided?tags.add('undecided'):tags.delete('undecided');card.dataset.tags=[...tags].join(' ');
}
document.getElementById('cards').addEventListener('click',e=>{
  const b=e.target.closest('button[data-act]');const card=e.target.closest('.card');if(card)select(card);
  if(b){const a=b.dataset.act;
    if(a==='pick')act(card,a,Number(card.querySelector('select.pick').value));
    else if(a==='edit')act(card,a,card.querySelector('textarea').value);
    else act(card,a,null);}
  const z=e.target.closest('a.zoom');if(z){e.preventDefault();zoom(card);}
});
function zoom(card){const a=card&&card.querySelector('a.zoom');if(!a)return;const z=document.getElementById('zoom');z.querySelector('img').src=a.getAttribute('href');z.hidden=false;}
document.getElementById('zoom').addEventListener('click',()=>document.getElementById('zoom').hidden=true);
document.addEventListener('keydown',e=>{
  if(e.target.matches('textarea,input,select'))return;const c=cards[sel];
  switch(e.key){case 'j':case 'ArrowRight':move(1);break;case 'k':case 'ArrowLeft':move(-1);break;
  case 'a':act(c,'approve',null);break;case 'r':act(c,'reject',null);break;case 'u':act(c,'undo',null);break;
  case 'e':{const d=c.querySelector('details');d.open=true;d.querySelector('textarea').focus();e.preventDefault();break;}
  case 'z':case 'Enter':zoom(c);break;case 'Escape':document.getElementById('zoom').hidden=true;break;default:return;}
});
document.getElementById('filters').addEventListener('click',e=>{
  const b=e.target.closest('button');if(!b)return;document.querySelectorAll('#filters button').forEach(x=>x.classList.toggle('on',x===b));
  const f=b.dataset.filter;cards.forEach(c=>c.classList.toggle('hidden',f!=='all'&&!c.dataset.tags.split(' ').includes(f)));move(0);
});
function setLock(l){readonly=!!l.busy;document.body.classList.toggle('readonly',readonly);
  document.getElementById('banner').textContent=l.busy?('Read-only: '+l.why):'';document.getElementById('plan').disabled=readonly;}
const log=document.getElementById('log');
const events=new EventSource('api/events');
events.addEventListener('lock',e=>setLock(JSON.parse(e.data)));
events.addEventListener('run',e=>{log.hidden=false;log.textContent+=JSON.parse(e.data)+'\n';log.scrollTop=log.scrollHeight;});
document.getElementById('plan').addEventListener('click',async()=>{
  const t=document.getElementById('plantext');t.textContent='pricing…';
  const p=await (await fetch('api/plan')).json();if(p.error){t.textContent=p.error;return;}
  t.textContent=p.summary;
  if(p.pays&&!confirm('This run may pay up to $'+p.cost_usd.toFixed(3)+'. Run it?'))return;
  const r=await fetch('api/run',{method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify({confirmed_cost_usd:p.cost_usd})});
  const j=await r.json();t.textContent=r.ok?'running…':j.error;
});
select(cards[0]);
"#;
