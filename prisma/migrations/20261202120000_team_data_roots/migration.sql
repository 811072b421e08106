-- Team data roots: folders inside RETORT_DATA_ROOTS that the team's file:// URIs must fall within.
-- Empty: the whole of RETORT_DATA_ROOTS (what every team had before).
ALTER TABLE "teams" ADD COLUMN "data_roots" TEXT[] DEFAULT ARRAY[]::TEXT[];
