-- AlterTable
ALTER TABLE "runs" ADD COLUMN     "dispatch" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "pause_requested_at" TIMESTAMPTZ(3),
ADD COLUMN     "retries" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "artifacts" ADD COLUMN     "metadata" JSONB;
