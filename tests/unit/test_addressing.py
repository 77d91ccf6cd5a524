"""Entity match on passages and answers: the asked drug by any of its names, the asked reaction
by MeSH tree or organ word; a plain refusal names what was asked."""

from tasks.core.addressing import Topic, about_reaction, names_any_drug, names_drug, refusal_text

LIVER = Topic(
    {"methotrexate": frozenset({"methotrexate", "amethopterin", "rheumatrex"})},
    frozenset({"C06.552"}),
    frozenset({"liver", "hepat"}),
    ("liver injuries",),
)


def test_a_drug_is_named_by_any_of_its_names_as_whole_words():
    assert names_drug("Rheumatrex was stopped.", LIVER.drugs["methotrexate"])
    assert not names_drug("Methotrexatum-free regimen.", {"methotrexate"})
    assert names_any_drug("no name here", LIVER, ["methotrexate"])  # the chunk's product tag
    assert not names_any_drug("Ellipticine was cytotoxic.", LIVER, ["cisplatin"])


def test_a_reaction_matches_under_its_mesh_tree_or_by_organ_word():
    assert about_reaction("Hepatitis developed.", ["C06.552.380"], LIVER)  # under liver diseases
    assert about_reaction("Hepatotoxicity was graded.", [], LIVER)  # organ word prefix
    assert not about_reaction("Oral dosing was weekly.", [], LIVER)
    assert not about_reaction("Injuries were rare.", ["C26"], LIVER)  # top level: not about it
    assert about_reaction("Anything at all.", [], Topic({"x": frozenset({"x"})}))


def test_the_refusal_names_the_drug_and_the_reaction_asked():
    amiodarone = Topic(
        {"amiodarone": frozenset({"amiodarone"})}, reaction_names=("hepatic reactions",)
    )
    assert (
        refusal_text(amiodarone) == "The corpus has nothing about amiodarone and hepatic reactions."
    )
    assert refusal_text(Topic()) == "The corpus has nothing about this question."
    assert Topic().empty and not amiodarone.asks_reaction
