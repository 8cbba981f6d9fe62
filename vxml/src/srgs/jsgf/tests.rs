use super::*;
use crate::srgs::{Match, SemanticValue};

fn abnf(text: &str) -> Grammar {
    let base = url::Url::parse("file:///g/main.gram").unwrap();
    Grammar::parse(text, Some("application/srgs"), Some(&base)).unwrap()
}

fn jsgf(text: &str) -> String {
    abnf(text).to_jsgf().unwrap().text
}

fn body(text: &str) -> String {
    // The public rule's line, without the header.
    jsgf(text)
        .lines()
        .find(|l| l.starts_with("public <root> = "))
        .unwrap()
        .trim_start_matches("public <root> = ")
        .to_owned()
}

#[test]
fn rules_alternatives_weights_and_tags() {
    let out = jsgf(
        "#ABNF 1.0;\nlanguage en; root $main;\n\
         public $main = fly to $city {out = 1} [please];\n\
         $city = /2/ Boston | /0.5/ \"New York\" | $NULL;",
    );
    assert!(out.starts_with("#JSGF V1.0;\ngrammar outdial;\npublic <root> = <r_main>;\n"));
    assert!(
        out.contains("<r_main> = fly to <r_city> [please];"),
        "{out}"
    );
    assert!(
        out.contains("<r_city> = /2/ boston | /0.5/ new york | /1/ <NULL>;"),
        "{out}"
    );
    let g = abnf("#ABNF 1.0;\nlanguage en;\npublic $a = x;\n$b = y;");
    let j = g.to_jsgf().unwrap();
    assert_eq!(j.words, ["x"]);
    assert_eq!(j.key, g.to_jsgf().unwrap().key);
    assert_ne!(
        j.key,
        abnf("#ABNF 1.0;\nlanguage en;\n$a = z;")
            .to_jsgf()
            .unwrap()
            .key
    );
}

#[test]
fn void_is_pruned_and_garbage_is_null() {
    assert_eq!(
        body("#ABNF 1.0;\nlanguage en;\n$m = a | b $VOID | $v c;\n$v = $VOID | d $VOID;"),
        "<r_m>;"
    );
    assert!(
        jsgf("#ABNF 1.0;\nlanguage en;\n$m = a | b $VOID | $v c;\n$v = $VOID | d $VOID;")
            .contains("<r_m> = a;")
    );
    assert_eq!(
        abnf("#ABNF 1.0;\nlanguage en;\n$m = a $VOID;").to_jsgf(),
        Err(JsgfError::MatchesNothing)
    );
    // A rule that can never finish (no way out of its recursion) matches nothing.
    assert_eq!(
        abnf("#ABNF 1.0;\nlanguage en;\n$m = a $m;").to_jsgf(),
        Err(JsgfError::MatchesNothing)
    );
    assert!(jsgf("#ABNF 1.0;\nlanguage en;\n$m = $GARBAGE help;").contains("<r_m> = help;"));
}

#[test]
fn repeats_expand_or_widen() {
    let out = jsgf("#ABNF 1.0;\nlanguage en;\n$m = a<2-4> (b c)<3> d<0-> e<2-> f<0-1> g<30-40>;");
    let line = out.lines().find(|l| l.starts_with("<r_m>")).unwrap();
    assert!(
        line.starts_with("<r_m> = a a [a [a]] <h> <h> <h> d* e e+ [f] g g g"),
        "{out}"
    );
    assert!(line.ends_with("g g+;"), "{out}");
    assert_eq!(line.matches(" g").count(), 20, "{out}");
    assert!(out.contains("<h> = b c;"), "{out}");
}

#[test]
fn recursion_only_at_the_end() {
    let out = jsgf("#ABNF 1.0;\nlanguage en;\n$m = a [$m];");
    assert!(out.contains("<r_m> = a [<r_m>];"), "{out}");
    // Through another rule, still last.
    assert!(
        abnf("#ABNF 1.0;\nlanguage en;\n$m = a [$n];\n$n = b $m;")
            .to_jsgf()
            .is_ok()
    );
    assert_eq!(
        abnf("#ABNF 1.0;\nlanguage en;\n$m = a [$m] b;").to_jsgf(),
        Err(JsgfError::Recursive("m".into()))
    );
    assert_eq!(
        abnf("#ABNF 1.0;\nlanguage en;\n$m = a ($m)<0-> | b;").to_jsgf(),
        Err(JsgfError::Recursive("m".into()))
    );
    // Through a helper rule made for a repeat, the grammar's rule is named.
    assert_eq!(
        abnf("#ABNF 1.0;\nlanguage en;\n$top = $m;\n$m = (a [$m] | b)<2-3>;").to_jsgf(),
        Err(JsgfError::Recursive("m".into()))
    );
}

#[test]
fn tokens_are_spoken_and_the_matcher_accepts_what_was_spoken() {
    let g = abnf(
        "#ABNF 1.0;\nlanguage en;\n$m = (gate 3 | \"U.S.A.\" | 21st | \"Hello, world!\") {'ok'} | \"?!\";",
    );
    let out = g.to_jsgf().unwrap();
    assert!(
        out.text
            .contains("<r_m> = gate three | u s a | twenty first | hello world;"),
        "{}",
        out.text
    );
    assert_eq!(out.words.len(), 9);
    for said in [
        "gate three",
        "gate 3",
        "u s a",
        "U.S.A.",
        "twenty first",
        "hello world",
    ] {
        let words: Vec<&str> = said.split_whitespace().collect();
        assert!(
            matches!(g.match_tokens(&words), Match::Complete(i) if i.value == SemanticValue::String("ok".into())),
            "{said}"
        );
    }
}

#[test]
fn without_tags_the_value_is_the_token_as_written() {
    let g = abnf("#ABNF 1.0;\nlanguage en;\n$m = gate 3;");
    match g.match_tokens(&["gate", "three"]) {
        Match::Complete(i) => {
            assert_eq!(i.utterance, "gate three");
            assert_eq!(i.value, SemanticValue::String("gate 3".into()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn externals_and_builtins_become_rules() {
    let mut g = abnf(
        "#ABNF 1.0;\nlanguage en; root $main;\n\
         public $main = to $<places.gram#city> on $<builtin:voice/date> | $<other.gram>;",
    );
    assert_eq!(
        g.to_jsgf(),
        Err(JsgfError::Unlinked("file:///g/places.gram".into()))
    );
    let places = abnf("#ABNF 1.0;\nlanguage en;\npublic $city = boston | $p;\n$p = york;");
    g.link_external(&url::Url::parse("file:///g/places.gram").unwrap(), places);
    let dtmf = abnf("#ABNF 1.0;\nmode dtmf;\n$k = 1;");
    g.link_external(&url::Url::parse("file:///g/other.gram").unwrap(), dtmf);
    let out = g.to_jsgf().unwrap().text;
    assert!(
        out.contains("<r_main> = to <x1_city> on <b_date>;"),
        "{out}"
    );
    assert!(out.contains("<x1_city> = boston | <x1_p>;"), "{out}");
    assert!(out.contains("<b_month> = january |"), "{out}");
}

#[test]
fn a_union_accepts_what_any_voice_grammar_accepts() {
    let a = abnf("#ABNF 1.0;\nlanguage en;\n$m = yes please | $<builtin:voice/boolean>;");
    let b = abnf("#ABNF 1.0;\nlanguage en;\n$m = no [$m];");
    let dtmf = abnf("#ABNF 1.0;\nmode dtmf;\n$m = 1;");
    let boolean = Grammar::builtin("boolean", Mode::Voice).unwrap();
    let out = jsgf_union(&[&a, &dtmf, &b, &boolean]).unwrap().text;
    assert!(
        out.contains("public <root> = <g0_r_m> | <g2_r_m> | <b_boolean>;"),
        "{out}"
    );
    assert!(out.contains("<g2_r_m> = no [<g2_r_m>];"), "{out}");
    assert_eq!(out.matches("<b_boolean> = ").count(), 1, "{out}");
    assert_eq!(jsgf_union(&[&dtmf]), Err(JsgfError::Dtmf));
    let bad = abnf("#ABNF 1.0;\nlanguage en;\n$m = a [$m] b;");
    assert_eq!(
        jsgf_union(&[&a, &bad]),
        Err(JsgfError::Recursive("m".into()))
    );
}

#[test]
fn dtmf_and_rootless_grammars_are_refused() {
    assert_eq!(
        abnf("#ABNF 1.0;\nmode dtmf;\n$k = 1;").to_jsgf(),
        Err(JsgfError::Dtmf)
    );
    assert_eq!(
        Grammar::builtin("digits", Mode::Dtmf).unwrap().to_jsgf(),
        Err(JsgfError::Dtmf)
    );
    let strict = Grammar::parse_conformant(
        "#ABNF 1.0 UTF-8;\nlanguage en;\n$a = x;",
        Some("application/srgs"),
        None,
    )
    .unwrap();
    assert_eq!(strict.to_jsgf(), Err(JsgfError::NoRoot));
}

#[test]
fn hostile_grammars_stay_bounded() {
    // Repeats of helper rules keep the output linear in the grammar's size.
    let mut text = String::from("#ABNF 1.0;\nlanguage en;\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "$r{i} = (word{i} $r{} | other{i} $r{})<0-20>;\n",
            i + 1,
            i + 2
        ));
    }
    text.push_str("$r3000 = end;\n$r3001 = end;\n");
    let size = abnf(&text).to_jsgf().map(|j| j.text.len());
    assert!(size.as_ref().is_ok_and(|s| *s < 400 * 3000), "{size:?}");
    // A grammar that is simply big is refused.
    let big = format!(
        "#ABNF 1.0;\nlanguage en;\n$m = {};",
        "supercalifragilisticexpialidocious ".repeat(40_000)
    );
    let size = abnf(&big).to_jsgf().map(|j| j.text.len());
    assert_eq!(size, Err(JsgfError::TooLarge));
    // Deep nesting is refused, not a stack overflow.
    let deep = format!(
        "#ABNF 1.0;\nlanguage en;\n$m = {}a{};",
        "(".repeat(200),
        ")".repeat(200)
    );
    if let Ok(g) = Grammar::parse(&deep, None, None) {
        let _ = g.to_jsgf();
    }
}

/// A tiny deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn sample(e: &Expr, rules: &[JRule], rng: &mut Rng, out: &mut Vec<String>) {
    match e {
        Expr::Word(w) => out.push(w.clone()),
        Expr::Seq(parts) => parts.iter().for_each(|p| sample(p, rules, rng, out)),
        Expr::Alt(alts) => {
            let (_, a) = &alts[rng.below(alts.len())];
            sample(a, rules, rng, out);
        }
        Expr::Opt(inner) => {
            if rng.below(2) == 0 {
                sample(inner, rules, rng, out);
            }
        }
        Expr::Star(inner) | Expr::Plus(inner) => {
            let least = usize::from(matches!(e, Expr::Plus(_)));
            for _ in 0..least + rng.below(4) {
                sample(inner, rules, rng, out);
            }
        }
        Expr::Rule(r) => sample(&rules[*r].body, rules, rng, out),
        Expr::Null => {}
        Expr::Void => panic!("VOID in a builtin form"),
    }
}

/// Every phrase of each builtin's JSGF form is read by the builtin's voice reader (dates:
/// unless the day does not exist in that month), and the JSGF compiles.
#[test]
fn builtin_forms_say_what_the_readers_read() {
    for spec in [
        "boolean",
        "digits",
        "digits?length=4",
        "digits?minlength=2;maxlength=30",
        "number",
        "currency",
        "date",
        "time",
        "phone",
    ] {
        let grammar = Grammar::builtin(spec, Mode::Voice).unwrap();
        let Kind::Builtin { builtin, .. } = &grammar.kind else {
            unreachable!()
        };
        let mut t = Translator::new();
        t.load(&grammar, String::new());
        let root = builtins::form(&mut t, builtin);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut words = Vec::new();
            sample(&root, &t.rules, &mut rng, &mut words);
            let tokens: Vec<&str> = words.iter().map(String::as_str).collect();
            let m = grammar.match_tokens(&tokens);
            let impossible_day = spec == "date"
                && ["thirty first", "thirtieth", "twenty ninth"]
                    .iter()
                    .any(|d| words.join(" ").contains(d));
            assert!(
                matches!(m, Match::Complete(_) | Match::Extendable(_)) || impossible_day,
                "{spec}: {words:?} gives {m:?}"
            );
        }
        let out = grammar.to_jsgf().unwrap();
        assert!(out.text.len() < 8192, "{spec}: {} bytes", out.text.len());
    }
}

#[test]
fn builtin_values_through_to_jsgf_words() {
    let cases = [
        (
            "number",
            "two hundred forty five",
            SemanticValue::Number(245.0),
        ),
        (
            "date",
            "the fifth of may",
            SemanticValue::String("????0505".into()),
        ),
        (
            "time",
            "three thirty p m",
            SemanticValue::String("0330p".into()),
        ),
        (
            "currency",
            "twelve dollars fifty",
            SemanticValue::String("12.50".into()),
        ),
        (
            "phone",
            "five five five oh one",
            SemanticValue::String("55501".into()),
        ),
    ];
    for (spec, said, value) in cases {
        let g = Grammar::builtin(spec, Mode::Voice).unwrap();
        let words: Vec<&str> = said.split_whitespace().collect();
        let j = g.to_jsgf().unwrap();
        assert!(
            words.iter().all(|w| j.words.iter().any(|v| v == w)),
            "{spec}"
        );
        match g.match_tokens(&words) {
            Match::Complete(i) | Match::Extendable(i) => assert_eq!(i.value, value, "{spec}"),
            other => panic!("{spec}: {other:?}"),
        }
    }
}
