-- CreateEnum
CREATE TYPE "delivery_status" AS ENUM ('pending', 'delivered', 'failed');

-- CreateTable
CREATE TABLE "webhooks" (
    "id" UUID NOT NULL,
    "team_id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "events" TEXT[],
    "secret" TEXT NOT NULL,
    "description" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "disabled_at" TIMESTAMPTZ(3),

    CONSTRAINT "webhooks_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_deliveries" (
    "id" BIGSERIAL NOT NULL,
    "webhook_id" UUID NOT NULL,
    "event" TEXT NOT NULL,
    "run_id" UUID,
    "payload" JSONB NOT NULL,
    "status" "delivery_status" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_status_code" INTEGER,
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMPTZ(3),

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_attempts" (
    "id" BIGSERIAL NOT NULL,
    "delivery_id" BIGINT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "status_code" INTEGER,
    "error" TEXT,
    "duration_ms" INTEGER NOT NULL,

    CONSTRAINT "webhook_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "webhooks_team_id_idx" ON "webhooks"("team_id");

-- CreateIndex
CREATE INDEX "webhook_deliveries_status_next_attempt_at_idx" ON "webhook_deliveries"("status", "next_attempt_at");

-- CreateIndex
CREATE INDEX "webhook_deliveries_webhook_id_id_idx" ON "webhook_deliveries"("webhook_id", "id");

-- CreateIndex
CREATE INDEX "webhook_attempts_delivery_id_idx" ON "webhook_attempts"("delivery_id");

-- AddForeignKey
ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_team_id_fkey" FOREIGN KEY ("team_id") REFERENCES "teams"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_webhook_id_fkey" FOREIGN KEY ("webhook_id") REFERENCES "webhooks"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_attempts" ADD CONSTRAINT "webhook_attempts_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "webhook_deliveries"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The outbox is filled by the database itself, in the transaction that records a run event: no
-- event that happened can miss its deliveries, whichever process wrote it.
CREATE FUNCTION "retort_enqueue_webhooks"() RETURNS trigger AS $$
DECLARE
    ev TEXT;
BEGIN
    IF NEW."type" = 'status' THEN
        ev := CASE NEW."data"->>'status'
            WHEN 'running' THEN 'run.started'
            WHEN 'succeeded' THEN 'run.succeeded'
            WHEN 'failed' THEN 'run.failed'
            WHEN 'canceled' THEN 'run.canceled'
        END;
    ELSIF NEW."type" = 'checkpoint' THEN
        ev := 'run.checkpointed';
    END IF;
    IF ev IS NULL THEN
        RETURN NEW;
    END IF;
    INSERT INTO "webhook_deliveries" ("webhook_id", "event", "run_id", "payload")
    SELECT w."id", ev, r."id", jsonb_build_object(
        'event', ev,
        'eventId', NEW."id"::TEXT,
        'createdAt', to_char(NEW."created_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'run', jsonb_build_object(
            'id', r."id", 'name', r."name", 'kind', r."kind", 'status', r."status", 'attempt', r."attempt",
            'tags', r."tags", 'summary', r."summary", 'error', r."error", 'accept', r."spec"->'accept'),
        'data', NEW."data")
    FROM "runs" r
    JOIN "webhooks" w ON w."team_id" = r."team_id"
    WHERE r."id" = NEW."run_id" AND w."disabled_at" IS NULL AND ev = ANY (w."events");
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "run_events_enqueue_webhooks"
    AFTER INSERT ON "run_events"
    FOR EACH ROW EXECUTE FUNCTION "retort_enqueue_webhooks"();
