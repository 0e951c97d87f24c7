"""Call recording (issue 13 item 5): per extension, the calls it makes and
takes are recorded by the media process (sipd/media/endpoint.py Tap) into a
stereo WAV under PBX_RECORDING_DIR (the caller on the left channel, the other
party on the right), named on the call's row; rows keep the name after the
file is removed at PBX_RECORDING_DAYS (sipd/recording.py) with "" instead.

- extension.record_calls: off for every extension until an admin turns it on
  (`pbxctl ext record NUMBER on`): a recording is a legal matter.
- call.recording: the WAV's path relative to PBX_RECORDING_DIR, "" for none.
"""

STATEMENTS = [
    'ALTER TABLE "extension" ADD COLUMN "record_calls" INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE "call" ADD COLUMN "recording" VARCHAR(255) NOT NULL DEFAULT \'\'',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)
