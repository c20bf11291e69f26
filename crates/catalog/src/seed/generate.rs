//! The deterministic product generator.

/// SplitMix64: tiny, fast, and fixed forever.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        // n is a small list length; the modulo bias is irrelevant here.
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Grammatical gender of a noun: masculine, feminine, neuter, plural.
#[derive(Clone, Copy)]
enum G {
    M,
    F,
    N,
    P,
}

/// A noun and its gender.
type Noun = (&'static str, G);
/// A category: name, base price in roubles, its nouns.
type Category = (&'static str, u64, &'static [Noun]);

const CATEGORIES: &[Category] = &[
    (
        "Электроника",
        15_000,
        &[
            ("смартфон", G::M),
            ("ноутбук", G::M),
            ("планшет", G::M),
            ("наушники", G::P),
            ("телевизор", G::M),
            ("колонка", G::F),
            ("камера", G::F),
        ],
    ),
    (
        "Книги",
        700,
        &[
            ("книга", G::F),
            ("энциклопедия", G::F),
            ("роман", G::M),
            ("сборник", G::M),
            ("атлас", G::M),
            ("учебник", G::M),
        ],
    ),
    (
        "Одежда",
        3_000,
        &[
            ("куртка", G::F),
            ("футболка", G::F),
            ("свитер", G::M),
            ("пальто", G::N),
            ("платье", G::N),
            ("шапка", G::F),
            ("джинсы", G::P),
        ],
    ),
    (
        "Спорт",
        4_000,
        &[
            ("мяч", G::M),
            ("велосипед", G::M),
            ("гантели", G::P),
            ("коврик", G::M),
            ("ракетка", G::F),
            ("самокат", G::M),
        ],
    ),
    (
        "Дом и сад",
        2_500,
        &[
            ("лампа", G::F),
            ("кресло", G::N),
            ("стол", G::M),
            ("чайник", G::M),
            ("горшок", G::M),
            ("одеяло", G::N),
        ],
    ),
    (
        "Игрушки",
        1_500,
        &[
            ("конструктор", G::M),
            ("кукла", G::F),
            ("машинка", G::F),
            ("пазл", G::M),
            ("робот", G::M),
            ("телескоп", G::M),
        ],
    ),
    (
        "Туризм",
        3_500,
        &[
            ("палатка", G::F),
            ("рюкзак", G::M),
            ("спальник", G::M),
            ("фонарь", G::M),
            ("термос", G::M),
            ("котелок", G::M),
        ],
    ),
    (
        "Продукты",
        400,
        &[
            ("чай", G::M),
            ("кофе", G::M),
            ("шоколад", G::M),
            ("печенье", G::N),
            ("мёд", G::M),
            ("варенье", G::N),
        ],
    ),
];

/// Adjectives in the four forms (m, f, n, plural).
const ADJECTIVES: &[[&str; 4]] = &[
    ["Новый", "Новая", "Новое", "Новые"],
    ["Компактный", "Компактная", "Компактное", "Компактные"],
    ["Лёгкий", "Лёгкая", "Лёгкое", "Лёгкие"],
    ["Прочный", "Прочная", "Прочное", "Прочные"],
    ["Детский", "Детская", "Детское", "Детские"],
    [
        "Классический",
        "Классическая",
        "Классическое",
        "Классические",
    ],
    ["Звёздный", "Звёздная", "Звёздное", "Звёздные"],
    ["Синий", "Синяя", "Синее", "Синие"],
    ["Большой", "Большая", "Большое", "Большие"],
    ["Умный", "Умная", "Умное", "Умные"],
    ["Походный", "Походная", "Походное", "Походные"],
    ["Космический", "Космическая", "Космическое", "Космические"],
];

const BRANDS: &[&str] = &[
    "Восход",
    "Байкал",
    "Орбита",
    "Север",
    "Заря",
    "Спутник",
    "Ладога",
    "Алтай",
    "Мир",
    "Рассвет",
    "Енисей",
    "Полюс",
];
/// The brand a search for «космос» must find, in the spellings users meet.
const KOSMOS: &[&str] = &["Космос", "КОСМОС", "космос"];
const SERIES: &[&str] = &["А", "М", "Про", "Лайт", "Макс", "X"];
const PHRASES: &[&str] = &[
    "Надёжный выбор на каждый день",
    "Подходит для дома и поездок",
    "Сделано с заботой о деталях",
    "Популярная модель этого сезона",
    "Отличный подарок",
    "Проверено покупателями",
];

/// One generated product (without an id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
}

/// What generated products look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Plausible catalog entries: «Синий рюкзак Байкал Про-123». Few
    /// distinct words, so a common one (an adjective, a brand) occurs in
    /// several percent of the names.
    #[default]
    Catalog,
    /// The original solution's data: three random words of a fixed
    /// vocabulary ([`crate::words::WORDS`]), so a word occurs in about 0.7%
    /// of the names; a description of ten more.
    Words,
}

/// Deterministic product stream.
pub struct Generator {
    rng: Rng,
    shape: Shape,
}

impl Generator {
    /// The stream for `seed`.
    pub fn new(seed: u64, shape: Shape) -> Self {
        Self {
            rng: Rng(seed),
            shape,
        }
    }

    /// The next product.
    pub fn product(&mut self) -> NewProduct {
        match self.shape {
            Shape::Catalog => self.catalog_product(),
            Shape::Words => self.words_product(),
        }
    }

    fn words_product(&mut self) -> NewProduct {
        use crate::words::WORDS;
        let r = &mut self.rng;
        let mut words = |n: usize| (0..n).map(|_| *r.pick(WORDS)).collect::<Vec<_>>().join(" ");
        let name = words(3);
        let description = words(10);
        let &(category, base, _) = r.pick(CATEGORIES);
        let roubles = (base * (20 + r.below(380) as u64) / 100).max(1);
        NewProduct {
            name,
            description,
            category: category.to_owned(),
            price_cents: i64::try_from(roubles * 100).unwrap_or(i64::MAX),
        }
    }

    fn catalog_product(&mut self) -> NewProduct {
        let r = &mut self.rng;
        let &(category, base, nouns) = r.pick(CATEGORIES);
        let &(noun, gender) = r.pick(nouns);
        let adj = r.pick(ADJECTIVES)[gender as usize];
        let brand = if r.below(100) < 3 {
            r.pick(KOSMOS)
        } else {
            r.pick(BRANDS)
        };
        let series = r.pick(SERIES);
        let model = 10 + r.below(990);
        let name = format!("{adj} {noun} {brand} {series}-{model}");
        let months = [6, 12, 24][r.below(3)];
        let description = format!("{name}. {}. Гарантия {months} мес.", r.pick(PHRASES));
        // 0.2x to 4x the category's base price, ending in .00 or .90.
        let roubles = (base * (20 + r.below(380) as u64) / 100).max(1);
        let kopecks = if r.below(2) == 0 { 0 } else { 90 };
        NewProduct {
            name,
            description,
            category: category.to_owned(),
            price_cents: i64::try_from(roubles * 100 + kopecks).unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::fold;

    #[test]
    fn the_same_seed_gives_the_same_products() {
        let a: Vec<_> = {
            let mut g = Generator::new(7, Shape::Catalog);
            (0..100).map(|_| g.product()).collect()
        };
        let b: Vec<_> = {
            let mut g = Generator::new(7, Shape::Catalog);
            (0..100).map(|_| g.product()).collect()
        };
        let c: Vec<_> = {
            let mut g = Generator::new(8, Shape::Catalog);
            (0..100).map(|_| g.product()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn some_names_contain_kosmos_and_prices_are_positive() {
        let mut g = Generator::new(1, Shape::Catalog);
        let products: Vec<_> = (0..10_000).map(|_| g.product()).collect();
        let kosmos = products
            .iter()
            .filter(|p| fold(&p.name).contains("космос"))
            .count();
        assert!((150..=450).contains(&kosmos), "{kosmos} of 10000");
        assert!(products.iter().all(|p| p.price_cents > 0));
        assert!(
            products.iter().any(|p| p.name.contains("Космическ")),
            "decoys exist"
        );
    }

    #[test]
    fn words_names_are_three_vocabulary_words_each_rare() {
        use crate::words::WORDS;
        let mut g = Generator::new(1, Shape::Words);
        let products: Vec<_> = (0..20_000).map(|_| g.product()).collect();
        assert!(products.iter().all(|p| {
            let words: Vec<_> = p.name.split(' ').collect();
            words.len() == 3 && words.iter().all(|w| WORDS.contains(w))
        }));
        // A whole vocabulary word is in 0.1-1% of the names (the original
        // load test's selectivity).
        for word in ["рюкзак", "синий", "космос"] {
            let n = products
                .iter()
                .filter(|p| p.name.split(' ').any(|w| w == word))
                .count();
            assert!((20..=200).contains(&n), "{word}: {n} of 20000");
        }
        let mut again = Generator::new(1, Shape::Words);
        assert_eq!(again.product(), products[0]);
    }
}
