"""The "kind:argument" syntax that noise specs and imbalance specs share.

`tfrobust.noise.parse_noise_spec` ("symmetric:0.4") and
`tfrobust.imbalance.parse_imbalance_spec` ("longtail:100") read the same
shape of string; this module splits and normalises it, parses a numeric
argument and words the errors, so the two read and complain alike. What a
kind means, and which kinds take an argument, stays with each parser.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class KindSpecSyntax:
    """The syntax of one family of "kind:argument" specs.

    Attributes:
        noun: what the specs are called in messages, e.g. "noise spec".
        valid: the valid forms, spelled out for messages.
    """

    noun: str
    valid: str

    def split(self, spec):
        """`(kind, has_argument, argument)`: the kind stripped and lower-cased,
        whether a ":" was present, and the argument stripped.

        Raises:
            ValueError: if `spec` is not a string.
        """
        if not isinstance(spec, str):
            article = "An" if self.noun[:1] in "aeiou" else "A"
            raise ValueError(f"{article} {self.noun} is a string, one of {self.valid}; got {spec!r}.")
        kind, separator, argument = spec.strip().partition(":")
        return kind.strip().lower(), bool(separator), argument.strip()

    def number(self, spec, argument) -> float:
        """`argument` of `spec` as a float, or a ValueError naming the valid forms."""
        try:
            return float(argument)
        except ValueError:
            raise ValueError(
                f"{self.noun.capitalize()} {spec!r}: {argument!r} is not a number; valid {self.noun}s are "
                f"{self.valid}."
            ) from None

    def unparseable(self, spec) -> ValueError:
        """The error for a spec of no valid form (to raise)."""
        return ValueError(f"Cannot parse {self.noun} {spec!r}; valid {self.noun}s are {self.valid}.")
