"""Label presets offered on the page: starting points, edited freely by the user."""

from __future__ import annotations

__all__ = ["PRESETS"]

# ESC-50's 50 classes, as its meta/esc50.csv names them (underscores as spaces)
ESC50 = (
    "dog, rooster, pig, cow, frog, cat, hen, insects, sheep, crow, rain, sea waves, crackling fire, crickets, "
    "chirping birds, water drops, wind, pouring water, toilet flush, thunderstorm, crying baby, sneezing, "
    "clapping, breathing, coughing, footsteps, laughing, brushing teeth, snoring, drinking sipping, "
    "door wood knock, mouse click, keyboard typing, door wood creaks, can opening, washing machine, "
    "vacuum cleaner, clock alarm, clock tick, glass breaking, helicopter, chainsaw, siren, car horn, engine, "
    "train, church bells, airplane, fireworks, hand saw"
)

# i18n key of the preset's name -> labels (English: the CLAP text encoders were trained on English)
PRESETS: dict[str, str] = {
    "preset_home": (
        "glass breaking, smoke alarm, dog barking, door knock, footsteps, baby crying, "
        "person shouting for help, heavy impact, quiet room"
    ),
    "preset_industrial": (
        "machine hum, grinding, hammering, drilling, alarm beeping, air leak hissing, "
        "metal clanking, running motor, quiet factory"
    ),
    "preset_animals": "dog barking, cat meowing, birds singing, rooster crowing, cow mooing, "
    "sheep bleating, frog croaking, insects buzzing, horse neighing",
    "preset_esc50": ESC50,
    "preset_test": "beep, hum, noise, clicks, chirp, silence",
}
