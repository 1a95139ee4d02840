"""Constants shared by the provider tests (a uniquely named module: every test folder has a conftest)."""

API_KEY = "sk-ant-api03-TESTKEY-9f8e7d6c5b4a3210"

OPENAI_KEY = "sk-proj-TESTKEY-0a1b2c3d4e5f"

ABC = "X:1\nT:clip\nM:3/4\nL:1/8\nQ:96\nK:F#m\nF2 A2 c2 | e2 d2 c2 | B2 A2 F2 |"

SLOTS = [(0, "convergent", 0.4, 100), (1, "convergent", 0.4, 101), (2, "convergent", 0.4, 102),
         (3, "divergent", 0.8, 103), (4, "divergent", 0.8, 104)]
