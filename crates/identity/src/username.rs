//! When two usernames are the same name: the uniqueness key. Shared by the
//! users service (uniqueness, lookup) and the auth service (login limits count
//! per account, whatever spelling is tried).
//!
//! The username is shown as typed, but it is unique (and looked up at login)
//! by its key, so a name that merely *looks* like a taken one is taken too
//! (`../shared/CONTRACT.md`: compared after Unicode normalisation and case
//! folding). The key is:
//!
//! 1. NFKC (compatibility composition): NFD and NFC spellings become one,
//!    fullwidth `ａｄａ` becomes `ada`, ligatures and other compatibility forms
//!    their plain letters;
//! 2. lowercased (Unicode), then NFKC again (lowercasing can denormalise);
//! 3. Cyrillic and Greek letters that look like Latin ones mapped to them
//!    (`а` U+0430 → `a`, `о` → `o`, `ο` U+03BF → `o`, …): a small, explicit
//!    subset of Unicode's confusables (UTS #39) for the scripts our users
//!    write in. Digit/letter look-alikes (`l`/`1`, `O`/`0`) are not folded.
//!
//! Invisible and direction-changing characters (zero-width space and
//! joiners, U+FEFF, soft hyphen, bidi overrides and isolates) have no place
//! in a name and are refused by validation rather than folded away; so are
//! characters that are not characters (unassigned, private use,
//! noncharacters), blanks drawn as nothing (U+2800), separators other than
//! the space, and a name that starts with a combining mark ([`refusal`]).
//!
//! Beyond the key, a name is also unique by its **skeleton** ([`skeleton`]):
//! Unicode's confusables mapping (UTS #39, the unicode-rs `unicode-security`
//! data) after case folding, so `paypaǀ` (U+01C0), `pɑypal` (U+0251),
//! `paypa1` and `PAYPAL` are all `paypal`'s. The key stays what logins are
//! counted and looked up by; the skeleton only decides what is taken.

use unicode_normalization::UnicodeNormalization as _;
use unicode_security::GeneralSecurityProfile as _;

/// The uniqueness key of a username (see the module docs).
pub fn key(username: &str) -> String {
    let folded: String = username.nfkc().collect::<String>().to_lowercase();
    folded.nfkc().map(latin_look_alike).collect()
}

/// The confusable skeleton of a username (UTS #39 §4), case-insensitive:
/// two names with one skeleton could be taken for one another.
pub fn skeleton(username: &str) -> String {
    let folded = key(username);
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    // The mapping's prototypes keep case (`0` is `O`): fold again.
    skeleton.to_lowercase().nfkc().collect()
}

/// Why `username` cannot be a username, beyond its length and control
/// characters (checked by the users service with its other field rules), or
/// `None`.
pub fn refusal(username: &str) -> Option<&'static str> {
    use unicode_security::general_security_profile::IdentifierType;
    if username.chars().any(is_invisible) {
        return Some("must not contain invisible or direction-changing characters");
    }
    // Code points the identifier data does not list are Not_Character (its
    // `@missing` default): unassigned, private use, noncharacters.
    let not_a_character = |c: char| {
        matches!(
            c.identifier_type(),
            None | Some(IdentifierType::Not_Character | IdentifierType::Default_Ignorable)
        )
    };
    if username.chars().any(not_a_character) {
        return Some("must not contain unassigned, private-use or invisible code points");
    }
    // Drawn as nothing, or a line break: a name that looks shorter or
    // split. The space (U+0020) is the one separator a name may hold.
    if username
        .chars()
        .any(|c| c == '\u{2800}' || (c.is_whitespace() && c != ' '))
    {
        return Some("must not contain blank characters other than the space");
    }
    if username
        .chars()
        .next()
        .is_some_and(unicode_normalization::char::is_combining_mark)
    {
        return Some("must not start with a combining mark");
    }
    None
}

/// Characters of format category (Cf) and similar invisibles that a
/// username must not contain.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{061C}'                    // Arabic letter mark
        | '\u{115F}' | '\u{1160}'       // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'       // Mongolian selectors and separator
        | '\u{200B}'..='\u{200F}'       // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
        | '\u{2066}'..='\u{206F}'       // bidi isolates, deprecated format chars
        | '\u{3164}'                    // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                    // zero-width no-break space (BOM)
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}'     // tags, variation selectors supplement
    )
}

/// Lowercase Cyrillic and Greek letters drawn like a Latin letter (in lower
/// or upper case), as that letter.
fn latin_look_alike(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' => 'e',
        'һ' | 'н' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'ӏ' => 'l',
        'м' => 'm',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' => 't',
        'с' => 'c',
        'у' => 'y',
        'ԝ' => 'w',
        'х' => 'x',
        'ԁ' => 'd',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'μ' => 'u',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ζ' => 'z',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ten look-alikes of an existing name found by the attack run: each
    /// is either refused by validation or has the same key.
    #[test]
    fn look_alikes_share_the_key_or_are_invisible() {
        let original = "ada.lovelace";
        let same_key = [
            "ada.lovela\u{0063}\u{0065}",  // plain (control)
            "Ada.Lovelace",                // case
            "ＡＤＡ.ｌｏｖｅｌａｃｅ",     // fullwidth
            "аda.lovelace",                // Cyrillic а
            "ada.lоvelace",                // Cyrillic о
            "ada.lovelac\u{0065}\u{0301}", // not the same: e + acute (checked below)
        ];
        for name in &same_key[..5] {
            assert_eq!(key(name), key(original), "{name:?}");
        }
        // Composed and decomposed spellings of one accented name.
        assert_eq!(key("Zoe\u{0301}"), key("Zo\u{00E9}"));
        assert_ne!(
            key(same_key[5]),
            key(original),
            "an accent is a different letter"
        );
        for invisible in [
            "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{202E}", "\u{00AD}", "\u{200C}", "\u{2066}",
        ] {
            let name = format!("ada{invisible}.lovelace");
            assert!(name.chars().any(is_invisible), "{name:?}");
        }
    }

    /// The look-alikes the second attack run found (issue 24 item 7): each
    /// has `paypal`'s skeleton, or is refused.
    #[test]
    fn confusables_share_the_skeleton() {
        let taken = skeleton("paypal");
        for name in [
            "paypa\u{01C0}", // ǀ dental click for l
            "p\u{0251}ypal", // ɑ Latin alpha for a
            "paypa1",
            "PAYPAL",
            "рауpаl", // Cyrillic р, а, у
            "ｐａｙｐａｌ",
        ] {
            assert_eq!(skeleton(name), taken, "{name:?}");
            assert_eq!(refusal(name), None, "{name:?}");
        }
        assert_eq!(skeleton("d0g"), skeleton("dog"));
        assert_ne!(skeleton("ada"), skeleton("adam"));
        assert_ne!(skeleton("иван"), skeleton("ivan"));
        assert_eq!(skeleton("Zoe\u{0301}"), skeleton("Zo\u{00E9}"));
    }

    #[test]
    fn invisible_unassigned_and_blank_characters_are_refused() {
        for name in [
            "ada\u{2800}",      // Braille pattern blank
            "ada\u{2028}x",     // line separator
            "ada\u{3000}x",     // ideographic space
            "ada\u{FFFF}",      // a noncharacter
            "ada\u{E000}",      // private use
            "ada\u{10FFFD}",    // private use, plane 16
            "ada\u{0378}",      // unassigned
            "\u{0301}\u{0302}", // combining marks only
            "\u{0301}ada",      // starting with one
            "ada\u{200B}",      // zero-width space
        ] {
            assert!(refusal(name).is_some(), "{name:?} accepted");
        }
        for name in [
            "ada lovelace",
            "Zoe\u{0301}",
            "Иван",
            "李小龙",
            "ada_1",
            "o'brien",
            "ada.lovelace@example.com",
            "ÆØÅ-(x)+[y]!?#$%&*=~^`|/\\,;:<>\"{}",
            "🙂",
        ] {
            assert_eq!(refusal(name), None, "{name:?}");
        }
    }

    #[test]
    fn distinct_names_keep_distinct_keys() {
        assert_ne!(key("ada"), key("adam"));
        assert_ne!(key("иван"), key("ivan"));
        assert_eq!(key("Иван"), key("иван"));
        assert!(!"ada.lovelace".chars().any(is_invisible));
    }
}
