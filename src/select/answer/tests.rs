use super::*;

fn ex(spec: &str, text: &str) -> Option<String> {
    Extractor::parse(spec).unwrap().extract(text)
}

#[test]
fn numbers_compare_as_numbers() {
    for (a, b) in [("1,000", "1000"), ("1000.0", "1000"), ("+1e3", "1000"), ("0.50", "0.5"), ("-0", "0")] {
        assert_eq!(normalise(a), normalise(b), "{a} vs {b}");
    }
    assert_eq!(normalise("1,000"), "1000");
    assert_eq!(normalise(" **$376.** "), "376");
    assert_eq!(normalise("12, 13"), "12, 13", "a list is not one number");
}

#[test]
fn text_normalises_case_space_and_trailing_punctuation() {
    assert_eq!(normalise("  Paris. "), "paris");
    assert_eq!(normalise("The   Eiffel\nTower!?"), "the eiffel tower");
    assert_eq!(normalise("\"Yes\""), "yes");
}

#[test]
fn auto_prefers_boxed_then_answer_line_then_last_number_then_text() {
    assert_eq!(ex("auto", "so 2+2 = \\boxed{4}, and 5 later").as_deref(), Some("4"));
    assert_eq!(ex("auto", "\\boxed{\\frac{1}{2}}").as_deref(), Some("0.5"));
    assert_eq!(ex("auto", "47 x 8 = 376\nAnswer: 47 * 8 = 376 apples\nHope this helps 1").as_deref(), Some("376"));
    assert_eq!(ex("auto", "Final answer: Paris.").as_deref(), Some("paris"));
    assert_eq!(ex("auto", "47 times 8 is 376.").as_deref(), Some("376"));
    assert_eq!(ex("auto", "It is 1,234 in total").as_deref(), Some("1234"));
    assert_eq!(ex("auto", "  Paris ").as_deref(), Some("paris"));
    assert_eq!(ex("auto", "   "), None);
}

#[test]
fn explicit_extractors() {
    assert_eq!(ex("last-number", "3 apples and -2.50 pears").as_deref(), Some("-2.5"));
    assert_eq!(ex("last-number", "no digits here"), None);
    assert_eq!(ex("boxed", "x = 5"), None);
    assert_eq!(ex("boxed", "\\boxed{x = {5}}").as_deref(), Some("x = {5}"));
    assert_eq!(ex("boxed", "\\boxed{unclosed"), None);
    assert_eq!(ex("text", "Hello  World."), Some("hello world".into()));
}

#[test]
fn json_pointer() {
    assert_eq!(ex("json:/answer", r#"{"answer": "Paris", "why": "x"}"#).as_deref(), Some("paris"));
    assert_eq!(ex("json:/a/0", "```json\n{\"a\": [1000.0]}\n```").as_deref(), Some("1000"));
    assert_eq!(ex("json:/b", r#"{"b": {"y": 1, "x": 2}}"#).as_deref(), Some(r#"{"x":2,"y":1}"#));
    assert_eq!(
        ex("json:/b", r#"{"b": [{"z": {"d": 1, "c": 2}, "a": 0}]}"#),
        ex("json:/b", r#"{"b": [{"a": 0, "z": {"c": 2, "d": 1}}]}"#),
        "objects compare with their keys sorted at every depth"
    );
    assert_eq!(ex("json:/missing", r#"{"a": 1}"#), None);
    assert_eq!(ex("json:/a", r#"{"a": null}"#), None);
    assert_eq!(ex("json:/a", "not json"), None);
    assert!(Extractor::parse("json:answer").is_err());
}

#[test]
fn regex_takes_the_first_group_of_the_first_match() {
    assert_eq!(ex(r"regex:ANSWER=(\w+)", "ANSWER=Blue then ANSWER=red").as_deref(), Some("blue"));
    assert_eq!(ex(r"regex:\d+", "a 12 b 13").as_deref(), Some("12"));
    assert_eq!(ex(r"regex:(x)", "nothing"), None);
    let e = Extractor::parse("regex:(unclosed").unwrap_err();
    assert!(e.contains("does not compile"), "{e}");
    assert!(Extractor::parse(&format!("regex:{}", "a".repeat(600))).is_err());
    assert!(Extractor::parse("majority").is_err());
}

#[test]
fn spec_round_trips() {
    for s in ["auto", "last-number", "boxed", "text", "json:/a/b", r"regex:(\d+)"] {
        assert_eq!(Extractor::parse(s).unwrap().spec(), s);
    }
}

/// Answers as models write them, through `auto`: (text, the answer it must give).
const AS_WRITTEN: &[(&str, &str)] = &[
    ("The answer is **42**.", "42"),
    ("So the total is 376.", "376"),
    ("**Answer:** 1,234,567", "1234567"),
    ("It costs $1,299.99 in total.", "1299.99"),
    ("Final answer: $45", "45"),
    ("That is €30.", "30"),
    ("The price rose by 12.5%.", "12.5"),
    ("About 50 % of them.", "50"),
    ("The answer is 0.50", "0.5"),
    ("Answer: 3/4", "0.75"),
    ("She ate 6/8 of the pie", "0.75"),
    ("x = \\frac{3}{4}", "0.75"),
    ("so \\boxed{\\dfrac{6}{8}}", "0.75"),
    ("The ratio is 2/6", "1/3"),
    ("Answer: -1/3", "-1/3"),
    ("It takes 2-3 hours.", "2-3"),
    ("Expect 2–3 days", "2-3"),
    ("The meeting is at 1:30.", "1:30"),
    ("Answer: 01:30", "1:30"),
    ("It ends at 12:05:30 sharp", "12:05:30"),
    ("The temperature was -5 degrees.", "-5"),
    ("Answer: −7", "-7"),
    ("Use the x-3 model", "3"),
    ("COVID-19", "19"),
    ("It was released on 2024-01-31.", "2024-01-31"),
    ("47 times 8 is 376", "376"),
    ("47 x 8 = 376 apples", "376"),
    ("The distance is 5 km.", "5"),
    ("Answer: 1e3", "1000"),
    ("1.5e-3 is the rate", "0.0015"),
    ("The answer is 123456789012345678901234567890.", "123456789012345678901234567890"),
    ("9007199254740993", "9007199254740993"),
    ("The answer is 9007199254740992.", "9007199254740992"),
    ("There are 007 agents", "7"),
    ("Result: +12", "12"),
    ("It is .5 liters", "0.5"),
    ("The answer is 100.000", "100"),
    ("The answer: Paris.", "paris"),
    ("Final Answer: The Eiffel Tower!", "the eiffel tower"),
    ("ANSWER: yes", "yes"),
    ("A multi-step answer is indeed a problem that", "a multi-step answer is indeed a problem that"),
    ("12, 13 and 14", "14"),
    ("Step 1: add. Step 2: multiply. The result is 56", "56"),
    ("The answer is 3.14159", "3.14159"),
    ("\\boxed{-0}", "0"),
    ("Answer: 0.1 + 0.2 = 0.3", "0.3"),
];

#[test]
fn answers_as_models_write_them() {
    for (text, want) in AS_WRITTEN {
        assert_eq!(ex("auto", text).as_deref(), Some(*want), "{text:?}");
    }
    assert!(AS_WRITTEN.len() >= 40);
}

#[test]
fn equal_answers_compare_equal_and_different_ones_do_not() {
    let same = [
        ("3/4", "0.75"),
        ("6/8", "\\frac{3}{4}"),
        ("2 - 3", "2–3"),
        ("01:30", "1:30"),
        ("1,000", "1e3"),
        ("50%", "50"),
        ("$12.00", "12"),
        ("-0.0", "0"),
        ("123456789012345678901234567890", "123,456,789,012,345,678,901,234,567,890"),
    ];
    for (a, b) in same {
        assert_eq!(normalise(a), normalise(b), "{a} vs {b}");
    }
    let different = [
        ("9007199254740993", "9007199254740992"), // equal as f64
        ("1/3", "0.333"),
        ("2-3", "-3"),
        ("1:30", "30"),
        ("1:30", "1.5"),
        ("3/4", "4"),
        ("12, 13", "1213"),
    ];
    for (a, b) in different {
        assert_ne!(normalise(a), normalise(b), "{a} vs {b}");
    }
}

#[test]
fn numbers_that_are_not_worth_expanding_stay_text() {
    assert_eq!(normalise("1e999999"), "1e999999");
    assert_eq!(normalise("1/0"), "1/0");
    assert_eq!(normalise("1,00"), "1,00", "not a thousands separator");
}
