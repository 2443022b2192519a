//! The `safety` stage's tests: options, builds, and what happens to a prompt that breaks a rule.

use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::engine::item::{Item, Prompt};
use crate::engine::media::Payload;
use crate::engine::stage::{CpuStage, Kind, StageError};

fn ctx() -> BuildContext {
    BuildContext {
        id: "safe".into(),
        inputs: vec!["prompts".into()],
        output_dir: PathBuf::from("output"),
        pipeline_file: PathBuf::from("pipeline.yaml"),
        dry_run: false,
        room_below: 4,
    }
}

fn build(options: Value) -> Arc<dyn CpuStage> {
    match Safety.build(&options, &ctx()) {
        Ok(Component::Cpu(stage)) => stage,
        Ok(_) => panic!("safety must build a CPU stage"),
        Err(e) => panic!("build failed: {e:#}"),
    }
}

fn item(text: &str) -> Item {
    Item::new(0, Prompt { image_prompt: text.into(), number: 1, ..Prompt::default() })
}

/// Runs one prompt through the stage, giving the item (with its facts) and the outcome.
fn run(stage: &Arc<dyn CpuStage>, text: &str) -> (Item, Result<Payload, StageError>) {
    let mut item = item(text);
    let outcome = stage.process(&mut item, Payload::Prompt);
    (item, outcome)
}

fn filtered_reason(outcome: Result<Payload, StageError>) -> String {
    match outcome {
        Err(StageError::Filtered { reason }) => reason,
        other => panic!("expected Filtered, got {other:?}"),
    }
}

fn check_error(options: Value) -> OptionsError {
    Safety.check(&options).expect_err("check should reject these options")
}

#[test]
fn a_clean_prompt_passes_untouched() {
    let stage = build(json!({ "deny": ["nude"] }));
    let (item, outcome) = run(&stage, "a cute bunny in a garden");
    assert!(matches!(outcome, Ok(Payload::Prompt)));
    assert!(item.facts.is_empty());
    assert_eq!(item.prompt.image_prompt, "a cute bunny in a garden");
}

#[test]
fn drop_filters_and_records_the_rule_and_reason() {
    let stage = build(json!({ "deny": ["gun", "nude"] }));
    let (item, outcome) = run(&stage, "a N.U.D.E statue");
    let rule = "deny term \"nude\" (from deny[1])";
    assert_eq!(filtered_reason(outcome), rule);
    assert_eq!(item.facts["safety_rule"], rule);
    assert_eq!(item.facts["safety_reason"], format!("\"N.U.D.E\" matched {rule}"));
}

#[test]
fn fail_fails_the_item_naming_the_rule() {
    let stage = build(json!({ "deny": ["gun"], "on_reject": "fail" }));
    let (item, outcome) = run(&stage, "a boy with a g-u-n");
    match outcome {
        Err(StageError::Failed { message, attempts }) => {
            assert_eq!(message, "unsafe prompt: \"g-u-n\" matched deny term \"gun\" (from deny[0])");
            assert_eq!(attempts, 1);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(item.facts["safety_rule"], "deny term \"gun\" (from deny[0])");
}

#[test]
fn rewrite_replaces_each_offending_span_and_passes_the_item_on() {
    let stage = build(json!({ "deny": ["gun"], "on_reject": "rewrite", "rewrite_text": "flower" }));
    let (item, outcome) = run(&stage, "a cowboy holding a GUN and two g u n s");
    assert!(matches!(outcome, Ok(Payload::Prompt)));
    assert_eq!(item.prompt.image_prompt, "a cowboy holding a flower and two flower");
    assert_eq!(item.facts["safety_rewritten"], true);
    assert_eq!(item.facts["safety_original_prompt"], "a cowboy holding a GUN and two g u n s");
    assert_eq!(item.facts["safety_rule"], "deny term \"gun\" (from deny[0])");
}

#[test]
fn rewrite_with_empty_text_removes_words_and_tidies_spaces() {
    let stage = build(json!({ "deny": ["bloody", "gun"], "on_reject": "rewrite" }));
    let (item, outcome) = run(&stage, "a bloody knight with a gun, smiling");
    assert!(outcome.is_ok());
    assert_eq!(item.prompt.image_prompt, "a knight with a, smiling");
}

#[test]
fn rewrite_that_leaves_nothing_fails() {
    let stage = build(json!({ "deny": ["gore"], "on_reject": "rewrite" }));
    let (_, outcome) = run(&stage, "GORE");
    assert!(matches!(outcome, Err(StageError::Failed { message, .. }) if message.contains("nothing left")));
}

#[test]
fn rewrite_cuts_an_over_long_prompt_at_a_word() {
    let stage = build(json!({ "max_prompt_chars": 12, "on_reject": "rewrite" }));
    let (item, outcome) = run(&stage, "a happy cat sitting on a mat");
    assert!(outcome.is_ok());
    assert_eq!(item.prompt.image_prompt, "a happy cat");
    assert_eq!(item.facts["safety_rule"], "max_prompt_chars 12");
}

#[test]
fn max_prompt_chars_counts_characters_not_bytes() {
    let stage = build(json!({ "max_prompt_chars": 5 }));
    assert!(run(&stage, "ééééé").1.is_ok());
    let (item, outcome) = run(&stage, "éééééé");
    assert_eq!(filtered_reason(outcome), "max_prompt_chars 5");
    assert_eq!(item.facts["safety_reason"], "prompt has 6 characters, over max_prompt_chars 5");
}

#[test]
fn regex_rule_fires_with_its_name() {
    let stage = build(json!({
        "regex": [
            { "pattern": "\\bzzz\\b" },
            { "name": "ages", "pattern": "\\b\\d+ years? old\\b" }
        ]
    }));
    let (item, outcome) = run(&stage, "a girl, 9 Years-Old");
    assert_eq!(filtered_reason(outcome), "regex \"ages\" /\\b\\d+ years? old\\b/");
    assert_eq!(item.facts["safety_reason"], "\"9 Years-Old\" matched regex \"ages\" /\\b\\d+ years? old\\b/");
    assert_eq!(filtered_reason(run(&stage, "ZZZ").1), "regex[0] /\\bzzz\\b/");
}

#[test]
fn allow_list_lets_a_false_positive_through() {
    let stage = build(json!({ "deny": ["assassin"], "allow": ["assassin bug"] }));
    assert!(run(&stage, "an assassin bug on a rose").1.is_ok());
    assert!(run(&stage, "an assassin").1.is_err());
}

#[test]
fn deny_file_terms_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "# comment\n\nnude   # trailing comment\n  gore \n").unwrap();
    let stage = build(json!({ "deny_files": [path] }));
    let reason = filtered_reason(run(&stage, "gory GORE").1);
    assert_eq!(reason, format!("deny term \"gore\" (from {}:4)", path.display()));
    assert!(run(&stage, "comment").1.is_ok(), "comments are not terms");
}

#[test]
fn a_missing_deny_file_is_a_build_error_naming_it() {
    let options = json!({ "deny_files": ["pipelines/safety/no-such-list.txt"] });
    let err = Safety.build(&options, &ctx()).err().expect("build should fail");
    let message = format!("{err:#}");
    assert!(message.starts_with("deny_files[0]: cannot read pipelines/safety/no-such-list.txt"), "{message}");
}

#[test]
fn a_file_term_with_nothing_left_is_a_build_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "gun\n---\n").unwrap();
    let err = Safety.build(&json!({ "deny_files": [path] }), &ctx()).err().expect("build should fail");
    assert!(format!("{err:#}").starts_with(&format!("{}:2: \"---\"", path.display())), "{err:#}");
}

#[test]
fn a_bad_regex_is_a_check_error_at_its_option_path() {
    let err = check_error(json!({ "regex": [{ "pattern": "ok" }, { "name": "x", "pattern": "(unclosed" }] }));
    assert_eq!(err.path, vec!["regex", "1", "pattern"]);
    assert!(err.message.contains("unclosed"), "{}", err.message);
    let err = check_error(json!({ "regex": [{ "pattern": "a*" }] }));
    assert_eq!(err.path, vec!["regex", "0", "pattern"]);
}

#[test]
fn check_rejects_bad_options_at_their_path() {
    assert_eq!(check_error(json!({ "deny": ["ok", "!!"] })).path, vec!["deny", "1"]);
    assert_eq!(check_error(json!({ "allow": ["..."], "deny": ["x"] })).path, vec!["allow", "0"]);
    assert_eq!(check_error(json!({ "max_prompt_chars": 0 })).path, vec!["max_prompt_chars"]);
    assert_eq!(check_error(json!({ "deny": ["x"], "rewrite_text": "y" })).path, vec!["rewrite_text"]);
    assert_eq!(check_error(json!({ "deny": ["x"], "on_reject": "ignore" })).path, vec!["on_reject"]);
    assert!(check_error(json!({ "deny": ["x"], "denny": ["y"] })).message.contains("unknown field"));
    assert!(check_error(json!({ "allow": ["x"] })).message.starts_with("no rules"));
}

#[test]
fn a_rewrite_text_that_breaks_a_rule_is_a_build_error() {
    let options = json!({ "deny": ["gun"], "on_reject": "rewrite", "rewrite_text": "toy gun" });
    let err = Safety.build(&options, &ctx()).err().expect("build should fail");
    assert_eq!(err.to_string(), "rewrite_text \"toy gun\" itself breaks deny term \"gun\" (from deny[0])");
}

/// The shipped lists, read from the repository as a pipeline would.
fn children_stage() -> Arc<dyn CpuStage> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/safety");
    build(json!({
        "deny_files": [dir.join("children-deny.txt")],
        "allow_files": [dir.join("children-allow.txt")],
    }))
}

#[test]
fn the_children_list_passes_ordinary_coloring_pages() {
    let stage = children_stage();
    for prompt in [
        "A friendly dragon reading a book under a tree, simple line art",
        "A knight with a sword and shield in front of a castle",
        "A classic car parked by the sea in Scunthorpe",
        "An assassin bug on a leaf, coloring page",
        "A killer whale jumping over the waves",
        "Kids having a water gun fight in the garden",
        "A bass guitar and a drum kit",
        "A pirate ship under a shooting star",
        "A glass of orange juice and a blood orange",
        "Sussex countryside with sheep",
    ] {
        let (item, outcome) = run(&stage, prompt);
        assert!(outcome.is_ok(), "{prompt}: {:?}", item.facts.get("safety_reason"));
    }
}

#[test]
fn the_children_list_catches_evasions() {
    let stage = children_stage();
    for prompt in [
        "a nаked woman",      // Cyrillic а
        "a N4K3D woman",      // leetspeak
        "ｎａｋｅｄ",         // fullwidth
        "a man with a g u n", // spaced letters
        "a soldier holding a h.a.n.d.g.u.n",
        "people dr1nking b33r",
        "a Sw4st1ka flag",
    ] {
        let (_, outcome) = run(&stage, prompt);
        assert!(matches!(outcome, Err(StageError::Filtered { .. })), "{prompt} passed");
    }
    let (_, outcome) = run(&stage, "a bloody battle");
    assert!(filtered_reason(outcome).starts_with("deny term \"bloody\" (from "));
}

/// Evasions of the shipped list by kind: each must be filtered.
const EVASIONS: [(&str, &[&str]); 7] = [
    (
        "default-ignorable characters inside a word",
        &[
            "a nu\u{115F}de woman",
            "a n\u{3164}ude statue",
            "a g\u{1160}un",
            "na\u{FFA0}ked",
            "p\u{200D}orn",
            "s\u{FE0F}ex",
            "nu\u{E0020}de",
            "k\u{034F}ill them",
            "bl\u{00AD}ood",
        ],
    ),
    (
        "look-alikes from other scripts",
        &[
            "a gսn",              // Armenian
            "ոude",               // Armenian
            "a nսdе figure",      // Armenian and Cyrillic
            "роrn",               // Cyrillic
            "кill him",           // Cyrillic
            "ηυdε",               // Greek
            "ᏴᏞᎾᎾᎠ on the floor", // Cherokee
            "ᎠᏒᏌᏀ",               // Cherokee
            "ｐｏｒｎ",           // fullwidth
            "𝖌𝖚𝖓 and 𝓷𝓾𝓭𝓮",       // mathematical
            "𝗞𝗜𝗟𝗟",               // mathematical sans-serif bold
        ],
    ),
    (
        "enclosed, squared and parenthesized letters",
        &["🅽🆄🅳🅴", "🅶🆄🅽", "🅝🅤🅓🅔", "ⓖⓤⓝ", "⒢⒰⒩", "🄶🅄🄽", "🇬🇺🇳", "🅽\u{FE0F}🆄\u{FE0F}🅳\u{FE0F}🅴\u{FE0F}"],
    ),
    (
        "masked letters",
        &["p*rn", "f*ck", "f**k", "sh*t", "b#tch", "k_ll them", "n.ked", "p@rn", "s*x", "a g*n"],
    ),
    ("doubled and stretched letters", &["nuude", "nuuuuuude", "a guun", "seex", "poorn", "bloood", "kiill"]),
    (
        "compounds of a marked term",
        &[
            "a gunfight",
            "bloodshed",
            "gunshot",
            "a gunman",
            "bloodthirsty",
            "a pornstar",
            "bullshit",
            "motherfucker",
            "a bomber plane",
            "murderous",
        ],
    ),
    ("earlier evasions", &["a nаked woman", "a N4K3D woman", "a man with a g u n", "a Sw4st1ka flag"]),
];

/// Innocent prompts the shipped lists must pass: idioms, colours, places, and words that merely
/// contain a short term or double a letter.
const INNOCENTS: [&str; 46] = [
    "kill two birds with one stone",
    "Kill Devil Hills lighthouse",
    "a wine-red apple",
    "a beer-barrel polka dance",
    "an ass (donkey)",
    "a nude-colored lipstick",
    "killing time at the park",
    "dressed to kill for the royal ball",
    "don't jump the gun",
    "a root beer float",
    "a glass of ginger beer",
    "a staple gun and a glue gun",
    "a blood-red sunset",
    "a bloodhound sniffing a trail",
    "a rowboat's gunwale",
    "the Gunnison river",
    "a market in Beer Sheva",
    "a buggy in Intercourse, Pennsylvania",
    "a killdeer on the beach",
    "bite the bullet",
    "cut the grass",
    "a class of kids",
    "a bass guitar",
    "a secret passage",
    "the Essex coast",
    "a cocktail umbrella",
    "Middlesex county",
    "Scunthorpe United",
    "a good balloon",
    "a happy bookkeeper",
    "Mississippi steamboat",
    "an assassin bug on a leaf",
    "a grid of 5*5 squares",
    "Mr.Smith's cat",
    "a U.S.A. flag",
    "draw a ruler_line",
    "alcohol markers and alcohol ink",
    "a nude pink dress",
    "a wine-colored scarf",
    "a tiny teacup",
    "a gunmetal gray car",
    "a Bombay cat",
    "a bath bomb",
    "the smoking gun clue",
    "red blood cells",
    "a bumblebee, Bombus terrestris",
];

#[test]
fn the_children_list_catches_each_kind_of_evasion() {
    let stage = children_stage();
    for (kind, prompts) in EVASIONS {
        for prompt in prompts {
            let (_, outcome) = run(&stage, prompt);
            assert!(matches!(outcome, Err(StageError::Filtered { .. })), "{kind}: {prompt:?} passed");
        }
    }
}

#[test]
fn the_children_list_passes_idioms_places_and_innocent_words() {
    let stage = children_stage();
    for prompt in INNOCENTS {
        let (item, outcome) = run(&stage, prompt);
        assert!(outcome.is_ok(), "{prompt}: {:?}", item.facts.get("safety_reason"));
    }
}

#[test]
fn an_allowed_phrase_allows_only_itself() {
    let stage = children_stage();
    for prompt in ["kill two people", "a wine bottle", "nude figure with a lipstick", "a gun fight", "an ass"]
    {
        let (_, outcome) = run(&stage, prompt);
        assert!(matches!(outcome, Err(StageError::Filtered { .. })), "{prompt} passed");
    }
}
