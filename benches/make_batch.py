"""make_batch.py TEMPLATE_JOURNAL OUT N: a batch of N items as the offline book leaves it
(journal rows, candidates, one metadata JSON per item, no images), to measure status/report."""
import json, os, random, shutil, sqlite3, sys
template, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out + "/metadata")
src = sqlite3.connect(template)
db = sqlite3.connect(out + "/journal.sqlite")
src.backup(db)
db.executescript("DELETE FROM items; DELETE FROM candidates; DELETE FROM submissions; DELETE FROM stored; DELETE FROM batch; PRAGMA journal_mode=WAL;")
rng = random.Random(7)
items, cands = [], []
for i in range(n):
    section, number = "s%d" % (i % 5), i + 1
    key, stem = "%s-%05d" % (section, number), "%s_%03d_mandala_%d" % (section, number, i)
    failed = rng.random() < 0.01
    verdict = rng.choices(["pass", "warn", "reject"], [80, 15, 5])[0]
    fp = "%016x" % rng.getrandbits(64)
    items.append((key, i, "mandala %d" % i, "failed" if failed else "written", "quality" if failed else None,
                  "gray pixels: 12%" if failed else None, 1 if failed else 0, fp, "2026-12-07T19:02:46Z"))
    if not failed:
        cands.append((key, fp, 0, verdict, int(verdict != "reject"), 3.0, "page", "2026-12-07T19:02:46Z"))
    meta = {"candidate": 0, "cleanup": {"gap_pixels": 0, "pinhole_pixels": 4, "pinholes_filled": 4, "regions_closed": 0,
            "speck_pixels": 0, "specks_removed": 0}, "description": "mandala %d" % i,
            "error_message": "stage \"quality\" failed after 1 attempt(s): gray pixels: 12%" if failed else None,
            "generation_time": 0.000496295, "image_number": number,
            "image_prompt": "a detailed mandala with flowers and leaves number %d, black and white line art" % i,
            "key": key, "model": "inkflow/pattern", "output_filename": None if failed else stem + ".png",
            "outputs": {} if failed else {"clean": stem + ".png", "thumb": "thumb/%s.jpg" % stem},
            "quality": {"metrics": {"coverage": 0.1953, "faint": 0.0, "ink_lost": 0.0, "largest_solid": 0.0, "line_px": 4536.0,
                "open": 0.1142, "paper": 0.3876, "regions": 10, "regions_per_kpx": 2.2044, "shading": 0.0, "specks": 0,
                "thin": 0.0128, "tone": 0.0}, "problems": [] if verdict == "pass" else ["gray pixels: 3.1%"], "verdict": verdict},
            "resolution": "255x330", "retry_count": 0, "section": section, "seed": 7, "style": "mandala",
            "success": not failed, "threshold": 128, "timestamp": "2026-12-07T19:02:46Z"}
    with open("%s/metadata/%s.json" % (out, stem), "w") as f:
        json.dump(meta, f, indent=2)
db.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?)", items)
db.executemany("INSERT INTO candidates VALUES (?,?,?,?,?,?,?,?)", cands)
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(n, "items,", sum(1 for i in items if i[3] == "failed"), "failed")
