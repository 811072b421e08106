-- CreateTable
CREATE TABLE "audit_log" (
    "id" BIGSERIAL NOT NULL,
    "team_id" UUID,
    "key_id" UUID,
    "action" TEXT NOT NULL,
    "target" TEXT,
    "status" INTEGER NOT NULL,
    "details" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "audit_log_team_id_id_idx" ON "audit_log"("team_id", "id");
