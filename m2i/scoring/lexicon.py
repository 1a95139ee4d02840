"""Word lists the text metrics read.

Conventions: every entry is lower case; multi-word entries are written with single spaces and
matched on word bigrams/trigrams; hyphenated entries are matched as one token. A word may sit in
several visual-detail categories (``"dawn"`` is both light and setting); it still counts once as a
distinct detail. Plural and simple inflected forms are folded by :func:`m2i.scoring.text.lemma`.
"""

from __future__ import annotations


def _words(block: str) -> frozenset[str]:
    return frozenset(w.strip() for w in block.replace("\n", ",").split(",") if w.strip())


# --- concrete visual detail (elaboration) ---------------------------------------------------

COLOUR = _words(
    """
    red, crimson, scarlet, vermilion, vermillion, ruby, maroon, burgundy, wine, cherry, orange, amber,
    tangerine, peach, coral, apricot, gold, golden, yellow, lemon, ochre, mustard, saffron, green,
    emerald, jade, olive, lime, chartreuse, mint, teal, turquoise, cyan, aqua, aquamarine, blue, azure,
    cobalt, navy, sapphire, cerulean, indigo, violet, purple, lavender, lilac, magenta, fuchsia, pink,
    rose, blush, mauve, plum, brown, sepia, umber, sienna, bronze, copper, rust, beige, tan, khaki,
    sand, cream, ivory, white, silver, grey, gray, charcoal, black, ebony, obsidian, pearl, pastel,
    pastels, monochrome, monochromatic, neon, iridescent, opalescent, sepia-toned, blood-red,
    sky-blue, ice-blue, jet-black, snow-white, blue-green, blue-violet, red-orange, gold-leaf,
    turquoise-blue, midnight blue, deep blue, dark blue, light blue, deep red, deep purple
    """
)

LIGHT = _words(
    """
    glow, glowing, glimmer, glimmering, shimmer, shimmering, sparkle, sparkling, glitter, glittering,
    gleam, gleaming, radiance, luminous, luminescent, luminescence, sunlight, sunlit, moonlight,
    moonlit, starlight, starlit, candlelight, candlelit, lamplight, firelight, twilight, dusk, dawn,
    sunrise, sunset, shadow, shadowed, silhouette, silhouetted, backlit, backlight, rim light,
    spotlight, spotlit, beam, ray, rays, sunbeam, sunbeams, haze, lantern, flare, lens flare,
    reflection, reflected, reflective, refraction, refracted, chiaroscuro, dim, dimly, brilliance,
    incandescent, flicker, flickering, bioluminescent, bioluminescence, aurora, halo, dappled,
    golden hour, blue hour, volumetric, god rays, harsh light, soft light, diffused light,
    natural light, low-key, high-key, glare, ember, embers, flame, flames, neon lights, lightning,
    highlights, highlight, spark, sparks, lit, illuminated, illuminating, illumination, shafts of light,
    light rays, beams of light, prism, rainbow
    """
)

TEXTURE = _words(
    """
    rough, smooth, glossy, matte, velvet, velvety, silky, silk, satin, grainy, grain, gritty, coarse,
    jagged, weathered, cracked, cracks, crumbling, rusted, rusty, metallic, chrome, glass, glassy,
    crystalline, frosted, frost, wet, damp, slick, polished, textured, texture, woven, knitted,
    fibrous, feathery, feathered, furry, fur, mossy, moss, leathery, brushstroke, brushstrokes,
    impasto, watercolor, watercolour, oil paint, oil painting, pencil, ink, sketch, granular, pebbled,
    rippled, rippling, ripples, liquid, molten, porous, sandy, dusty, dust, gauzy, translucent,
    transparent, opaque, marble, marbled, wooden, wood, stone, concrete, brick, paper, torn,
    fractured, shattered, shards, fabric, lace, tattered, sheen, lustrous, powdery, fuzzy, spiky,
    thorny, scaly, gnarled, twisted, tangled, bumpy, wrinkled, soft-focus, blurred, blurry, sharp,
    crisp, detailed, intricate, filigree, mosaic, stained glass, cobblestone, cobblestones, gravel,
    ice, icy, steel, iron, gilded, lacquered, enamel, canvas, pixelated, holographic
    """
)

COMPOSITION = _words(
    """
    foreground, background, midground, middle ground, centered, centre, center, framed, framing,
    frame, symmetry, symmetrical, asymmetrical, asymmetric, diagonal, diagonals, vanishing point,
    horizon line, perspective, close-up, closeup, wide-angle, wide angle, wide shot, aerial,
    bird's-eye, birds-eye, overhead, low angle, low-angle, high angle, panoramic, panorama, portrait,
    triptych, layered, layers, depth of field, bokeh, focal point, rule of thirds, leading lines,
    vignette, negative space, split-screen, grid, spiral, spirals, circular, geometric, minimalist,
    cropped, off-center, left side, right side, upper left, upper right, lower left, lower right,
    corner, edges, distant, towering, scale, lens, macro, cinematic, isometric, tilted, dutch angle,
    fisheye, telephoto, shallow depth, long exposure, top-down, side view, profile, silhouetted against,
    in the distance, on the left, on the right, at the center, at the bottom, at the top, above, below,
    beneath, behind, surrounded by, flanked by, composition, concentric, radial, vertical, horizontal,
    juxtaposed, juxtaposition, overlapping, mirrored, reflection pool
    """
)

OBJECTS = _words(
    """
    tree, branch, vine, root, roots, trunk, flower, petal, leaf, leaves, blossom, blossoms, rose,
    lily, lotus, tulip, orchid, sunflower, fern, bird, feather, wing, wings, butterfly, moth, fish,
    koi, whale, jellyfish, wolf, horse, deer, stag, fox, cat, dog, raven, crow, owl, dove, swan,
    serpent, snake, dragon, phoenix, figure, person, woman, man, child, girl, boy, dancer, dancers,
    couple, crowd, face, eyes, eye, hand, hands, fingers, body, hair, dress, gown, cloak, robe, mask,
    crown, piano, keys, violin, cello, guitar, drum, drums, trumpet, saxophone, microphone,
    instrument, headphones, vinyl, record, speaker, clock, hourglass, mirror, window, door, doorway,
    stair, stairs, staircase, steps, bridge, tower, building, skyscraper, house, cottage, cabin, castle,
    cathedral, temple, ruin, ruins, statue, sculpture, pillar, column, arch, archway, boat, ship,
    sail, sailboat, car, train, bicycle, lamp, streetlamp, streetlight, candle, book, books, chair,
    table, bed, cup, glass of, bottle, balloon, kite, umbrella, rope, chain, chains, wheel, gear,
    gears, machine, machinery, wire, wires, cable, screen, sphere, orb, cube, pyramid, ribbon,
    thread, threads, smoke, cloud, clouds, moon, sun, star, stars, planet, comet, galaxy, nebula,
    raindrop, raindrops, snowflake, snowflakes, wave, waves, river, lake, ocean, sea, waterfall,
    stream, pond, mountain, mountains, hill, hills, rock, rocks, boulder, cliff, cliffs, island, dune,
    dunes, road, path, pathway, street, fence, wall, walls, grass, wheat, bubble, bubbles, droplet,
    droplets, crystal, crystals, gem, gems, jewel, jewels, diamond, skull, bone, bones, sword, shield,
    flag, banner, curtain, curtains, veil, lighthouse, bench, billboard, sign, tent, fountain,
    painting, portrait of, photograph, letter, paper lanterns, kite, boots, shoes, hat, umbrella,
    bouquet, vase, teacup, fireflies, firefly, insects, bee, bees, spider, web, cobweb, coral reef,
    shell, shells, pearl, anchor, compass, map, key, lock, cage, birdcage, ladder, rooftop, chimney,
    smokestack, factory, tracks, railway, tunnel, pier, dock, harbor lights, street lamps, cars,
    tree branches, silhouettes, figures, lanterns, candles, mirrors, windows, doors, towers,
    buildings, trees, flowers, birds, butterflies, petals, musical notes, notes, staff lines,
    sheet music, ink drops, paintbrush, palette knife
    """
)

SETTING = _words(
    """
    forest, woods, woodland, jungle, rainforest, desert, meadow, field, fields, garden, orchard,
    city, cityscape, skyline, town, village, metropolis, downtown, suburb, room, hall, ballroom,
    chamber, corridor, hallway, studio, stage, theater, theatre, concert hall, club, nightclub, cafe,
    bar, library, attic, basement, cellar, cave, cavern, grotto, underwater, seabed, ocean floor,
    beach, shore, shoreline, coast, coastline, harbor, harbour, bay, valley, canyon, gorge, tundra,
    glacier, arctic, outer space, cosmos, universe, sky, skies, night sky, starry sky, night,
    midnight, nighttime, morning, evening, afternoon, noon, winter, summer, autumn, fall foliage,
    storm, thunderstorm, blizzard, rain, rainy, fog, foggy, mist, misty, snow, snowy, landscape,
    dreamscape, seascape, wasteland, rooftop, subway, station, market, marketplace, carnival,
    festival, palace, courtyard, plaza, square, park, swamp, marsh, bayou, prairie, savanna,
    mountaintop, summit, plateau, volcano, lagoon, riverbank, lakeside, countryside, farmland,
    vineyard, temple grounds, church, chapel, interior, exterior, alley, alleyway, street corner,
    highway, bridge over, train station, warehouse, laboratory, greenhouse, ruins of, abyss, void,
    clearing, grove, hillside, cliffside, pier at, neon-lit city, underworld, heaven, clouds above,
    horizon
    """
)

CATEGORIES: dict[str, frozenset[str]] = {
    "colour": COLOUR,
    "light": LIGHT,
    "texture": TEXTURE,
    "composition": COMPOSITION,
    "objects": OBJECTS,
    "setting": SETTING,
}
"""The six kinds of concrete visual detail elaboration counts."""

DETAIL_TERMS: frozenset[str] = frozenset().union(*CATEGORIES.values())

# --- musical expectations (alignment, coherence) --------------------------------------------

AROUSAL_HIGH = _words(
    """
    energetic, energy, vibrant, dynamic, fast, rapid, racing, pulsing, pulsating, pulse, explosive,
    explosion, explosions, frenetic, frantic, wild, chaotic, chaos, intense, intensity, driving,
    surging, surge, rushing, swirling, whirling, whirlwind, vigorous, lively, bustling, electric,
    electrifying, kinetic, thunderous, fierce, ferocious, powerful, dramatic, burst, bursting, bursts,
    upbeat, exhilarating, exhilarated, exhilaration, excitement, excited, exciting, thrilling, stormy,
    crashing, turbulent, turbulence, blazing, roaring, momentum, speed, speeding, frenzy, frenzied,
    urgent, urgency, restless, agitated, aggressive, rhythmic, throbbing, spinning, soaring, leaping,
    dancing, pounding, raging, tempestuous, erupting, eruption, vivacious, animated, bouncing,
    buzzing, galloping, sprinting, fiery
    """
)

AROUSAL_LOW = _words(
    """
    calm, calming, calmness, serene, serenity, tranquil, tranquility, tranquillity, peaceful, peace,
    still, stillness, quiet, quietly, gentle, gently, slow, slowly, languid, relaxed, relaxing,
    soothing, softly, hushed, placid, lull, lulling, drifting, drift, drifts, leisurely, lazy,
    sleepy, sleeping, asleep, meditative, restful, rest, resting, subdued, motionless, idle, lulled,
    unhurried, contemplative, contemplation, introspective, introspection, reflective, pensive,
    dreamy, dreamlike, floating, hazy, slumber, silent, silence, sluggish, static
    """
)

VALENCE_POS = _words(
    """
    happy, happiness, joy, joyful, joyous, cheerful, cheer, uplifting, uplifted, hopeful, hope,
    playful, warmth, radiant, sunny, celebratory, celebration, celebrating, euphoric, euphoria,
    delight, delightful, blissful, bliss, triumphant, triumph, light-hearted, lighthearted, gleeful,
    glee, optimistic, optimism, love, loving, elated, elation, jubilant, whimsical, carefree,
    sunshine, festive, bright, brightness, brilliant, vibrant, lively, laughing, laughter, smiling,
    smile, comforting, content, contentment, harmonious, harmony, beautiful, beauty, wonder,
    wonderful, enchanting, magical, heavenly, inviting, welcoming
    """
)

VALENCE_NEG = _words(
    """
    dark, darkness, darker, darkened, sad, sadness, melancholy, melancholic, somber, sombre, gloomy,
    gloom, grim, bleak, mournful, mourning, sorrow, sorrowful, grief, despair, desperate, lonely,
    loneliness, desolate, desolation, ominous, foreboding, menacing, menace, sinister, brooding,
    haunting, haunted, tense, tension, anxious, anxiety, eerie, dread, tragic, tragedy, fear,
    fearful, frightening, pain, painful, turmoil, anguish, wistful, longing, moody, bittersweet,
    forlorn, lament, weeping, tears, decay, decaying, abandoned, desolated, cold, chilling, bleakness,
    threatening, dangerous, danger, death, dying, dead, shadowy, foreboding, unsettling, disturbing,
    nightmare, nightmarish, angst, ache, aching, broken, lost, regret, solitude, isolation, isolated,
    gothic, macabre, doom, doomed, storm-cloud, funeral, grief-stricken, heartbreak, heartbroken
    """
)

DYNAMICS_LOUD = _words(
    """
    loud, bold, powerful, intense, thunderous, explosive, booming, roaring, crashing, vivid,
    saturated, blazing, striking, forceful, strong, heavy, massive, dramatic, overwhelming, deafening,
    fierce, piercing, clashing, colossal, monumental, vigorous, punchy, high-contrast, commanding,
    majestic, epic, grand, towering, towering waves, stark
    """
)

DYNAMICS_SOFT = _words(
    """
    soft, softly, delicate, faint, muted, hushed, subtle, quiet, gentle, whisper, whispering,
    whispers, pale, tender, fragile, wispy, gauzy, feathery, light-touch, understated, subdued,
    fading, faded, dim, minimal, minimalist, sparse, low-contrast, washed-out, airy, ethereal, misty
    """
)

# Words in the *features* (legacy mood strings, full-form mood words, dynamics labels) and the
# expectation each sets. Values are +1 (high / positive) or -1 (low / negative).
FEATURE_AROUSAL: dict[str, int] = {
    **dict.fromkeys(
        ("energetic", "upbeat", "dramatic", "driving", "intense", "excited", "aggressive", "lively",
         "fast", "tense", "agitated", "powerful", "angry", "euphoric", "exciting"),
        1,
    ),
    **dict.fromkeys(
        ("calm", "relaxed", "peaceful", "gentle", "soft", "slow", "sleepy", "tender", "serene",
         "tranquil", "quiet", "dreamy", "mellow", "laid-back", "melancholic", "sad", "somber"),
        -1,
    ),
}
FEATURE_VALENCE: dict[str, int] = {
    **dict.fromkeys(
        ("bright", "happy", "joyful", "cheerful", "uplifting", "hopeful", "positive", "warm",
         "playful", "euphoric", "triumphant", "peaceful", "serene", "tender"),
        1,
    ),
    **dict.fromkeys(
        ("dark", "sad", "melancholic", "tense", "gloomy", "somber", "negative", "angry", "fearful",
         "anxious", "ominous", "aggressive", "bittersweet"),
        -1,
    ),
}
FEATURE_DYNAMICS: dict[str, int] = {
    **dict.fromkeys(("soft", "quiet", "pp", "ppp", "p", "pianissimo", "piano", "gentle", "very_soft"), -1),
    **dict.fromkeys(
        ("intense", "very_intense", "loud", "f", "ff", "fff", "forte", "fortissimo", "strong", "powerful",
         "very_loud"),
        1,
    ),
}

POLARITY: dict[str, frozenset[str]] = {
    "arousal_high": AROUSAL_HIGH,
    "arousal_low": AROUSAL_LOW,
    "valence_pos": VALENCE_POS,
    "valence_neg": VALENCE_NEG,
    "loud": DYNAMICS_LOUD,
    "soft": DYNAMICS_SOFT,
}
"""Lexicons of the explicit musical terms alignment and coherence count."""

POLARITY_TERMS: frozenset[str] = frozenset().union(*POLARITY.values())
