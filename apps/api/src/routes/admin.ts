import {
  createKey,
  createTeam,
  type Db,
  getTeam,
  type KeyIdentity,
  type KeyRecord,
  keyTeam,
  listAudit,
  listKeys,
  listTeams,
  revokeKey,
  SCOPES,
  type Scope,
  setTeamDataRoots,
  type TeamRecord,
} from '@retort/db';
import { ErrorBodySchema, RetortError } from '@retort/spec';
import { checkTeamRoots } from '@retort/uri-policy';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { BigIdSchema, isUuid } from './ids.js';

const errors = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema };

const DataRootsSchema = Type.Union(
  [
    Type.Array(Type.String({ minLength: 1, maxLength: 1000 }), {
      minItems: 1,
      maxItems: 100,
      uniqueItems: true,
    }),
    Type.Null(),
  ],
  {
    description:
      "Absolute folders inside the server's `RETORT_DATA_ROOTS` that the team's `file://` URIs must fall within (symlinks resolved first); `null`: all of them.",
  },
);

const TeamSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  dataRoots: DataRootsSchema,
  createdAt: Type.String({ format: 'date-time' }),
});
const KeySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  teamId: Type.String({ format: 'uuid' }),
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to tell keys apart.' }),
  scopes: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'Last authenticated request (recorded at most once a minute).',
  }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const AuditSchema = Type.Object({
  id: Type.String(),
  teamId: Type.Union([Type.String(), Type.Null()]),
  keyId: Type.Union([Type.String(), Type.Null()]),
  action: Type.String({ description: 'Method and route, e.g. `POST /v1/runs`.' }),
  target: Type.Union([Type.String(), Type.Null()]),
  status: Type.Integer({ description: 'The HTTP status the write was answered with.' }),
  details: Type.Unknown(),
  createdAt: Type.String({ format: 'date-time' }),
});

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const teamResource = (t: TeamRecord) => ({
  id: t.id,
  name: t.name,
  dataRoots: t.dataRoots,
  createdAt: t.createdAt.toISOString(),
});

/** Team data roots as given, checked against the server's; 400 listing every bad entry. */
function teamRoots(given: string[] | null | undefined, globalRoots: string[]): string[] | null {
  if (given === undefined || given === null) return null;
  const { roots, problems } = checkTeamRoots(given, globalRoots, '/body/dataRoots');
  if (problems.length > 0)
    throw new RetortError('RETORT_REQUEST_INVALID', 'Some data roots cannot be used.', problems);
  return roots;
}

const operatorsOnly = (identity: KeyIdentity, what: string) => {
  if (!identity.operator)
    throw new RetortError(
      'RETORT_FORBIDDEN',
      `Only an operator's key (an admin key of the default team) ${what}.`,
    );
};
const keyResource = (k: KeyRecord) => ({
  ...k,
  createdAt: k.createdAt.toISOString(),
  lastUsedAt: iso(k.lastUsedAt),
  revokedAt: iso(k.revokedAt),
});

/** The team a request may manage: its own, or any for an operator; anything else does not exist. */
async function manageableTeam(db: Db, identity: KeyIdentity, teamId: string) {
  const team =
    isUuid(teamId) && (identity.operator || identity.teamId === teamId) ? await getTeam(db, teamId) : null;
  if (!team) throw new RetortError('RETORT_NOT_FOUND', `No team ${teamId}.`);
  return team;
}

/**
 * Teams, their API keys and the audit log. Every route needs the `admin` scope; an admin key of the
 * default team (an operator's) reaches every team, any other admin key only its own.
 */
export function adminRoutes(app: FastifyInstance, db: Db, globalDataRoots: string[]): void {
  app.post<{ Body: { name: string; dataRoots?: string[] | null } }>(
    '/v1/admin/teams',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Create a team',
        description:
          'Operators only (an admin key of the default team). Give it keys with `POST /v1/admin/teams/{id}/keys`.',
        tags: ['admin'],
        body: Type.Object(
          {
            name: Type.String({
              pattern: '^[a-z0-9][a-z0-9_-]{0,62}$',
              description: 'Lower case, digits, - and _.',
            }),
            dataRoots: Type.Optional(DataRootsSchema),
          },
          { additionalProperties: false },
        ),
        response: { 201: TeamSchema, ...errors, 409: ErrorBodySchema },
      },
    },
    async (request, reply) => {
      operatorsOnly(request.identity, 'creates teams');
      const dataRoots = teamRoots(request.body.dataRoots, globalDataRoots);
      const team = await createTeam(db, { name: request.body.name, dataRoots });
      request.auditTarget = team.id;
      return reply.status(201).send(teamResource(team));
    },
  );

  app.get<{ Params: { teamId: string } }>(
    '/v1/admin/teams/:teamId',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'One team',
        description: 'Any team for an operator; your own otherwise.',
        tags: ['admin'],
        params: Type.Object({ teamId: Type.String() }),
        response: { 200: TeamSchema, ...errors },
      },
    },
    async (request) => teamResource(await manageableTeam(db, request.identity, request.params.teamId)),
  );

  app.patch<{ Params: { teamId: string }; Body: { dataRoots?: string[] | null } }>(
    '/v1/admin/teams/:teamId',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Change a team',
        description:
          'Operators only. `dataRoots` replaces the team’s data roots (`null`: all of `RETORT_DATA_ROOTS`); runs submitted from then on, and runs that start from then on, are held to them.',
        tags: ['admin'],
        params: Type.Object({ teamId: Type.String() }),
        body: Type.Object({ dataRoots: Type.Optional(DataRootsSchema) }, { additionalProperties: false }),
        response: { 200: TeamSchema, ...errors },
      },
    },
    async (request) => {
      const team = await manageableTeam(db, request.identity, request.params.teamId);
      operatorsOnly(request.identity, 'changes teams');
      if (request.body.dataRoots === undefined) return teamResource(team);
      const updated = await setTeamDataRoots(db, team.id, teamRoots(request.body.dataRoots, globalDataRoots));
      if (!updated) throw new RetortError('RETORT_NOT_FOUND', `No team ${team.id}.`);
      return teamResource(updated);
    },
  );

  app.get(
    '/v1/admin/teams',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'List teams',
        description: 'Every team for an operator; your own otherwise.',
        tags: ['admin'],
        response: { 200: Type.Object({ items: Type.Array(TeamSchema) }), ...errors },
      },
    },
    async (request) => {
      const teams = await listTeams(db, request.identity.operator ? undefined : request.identity.teamId);
      return { items: teams.map(teamResource) };
    },
  );

  app.post<{ Params: { teamId: string }; Body: { name: string; scopes: Scope[] } }>(
    '/v1/admin/teams/:teamId/keys',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Create an API key',
        description:
          'The answer holds the key itself, once: only its sha256 is stored, so it cannot be shown again. ' +
          'Scopes: `runs:read` (see runs, metrics, artifacts, events), `runs:write` (submit and steer runs, webhooks), `admin` (keys, audit log).',
        tags: ['admin'],
        params: Type.Object({ teamId: Type.String() }),
        body: Type.Object(
          {
            name: Type.String({
              minLength: 1,
              maxLength: 100,
              description: 'What the key is for, e.g. "nightly CI".',
            }),
            scopes: Type.Array(Type.Enum([...SCOPES]), {
              minItems: 1,
              maxItems: SCOPES.length,
              uniqueItems: true,
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            ...KeySchema.properties,
            key: Type.String({ description: 'The secret, shown this once.' }),
          }),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const team = await manageableTeam(db, request.identity, request.params.teamId);
      const { key, record } = await createKey(db, team.id, request.body.name, request.body.scopes);
      request.auditTarget = record.id;
      return reply.status(201).send({ ...keyResource(record), key });
    },
  );

  app.get<{ Params: { teamId: string } }>(
    '/v1/admin/teams/:teamId/keys',
    {
      config: { scope: 'admin' },
      schema: {
        summary: "List a team's API keys",
        description: 'Revoked keys included; the keys themselves are never shown again.',
        tags: ['admin'],
        params: Type.Object({ teamId: Type.String() }),
        response: { 200: Type.Object({ items: Type.Array(KeySchema) }), ...errors },
      },
    },
    async (request) => {
      const team = await manageableTeam(db, request.identity, request.params.teamId);
      return { items: (await listKeys(db, team.id)).map(keyResource) };
    },
  );

  app.delete<{ Params: { keyId: string } }>(
    '/v1/admin/keys/:keyId',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Revoke an API key',
        description: 'From the next request on, the key answers 401. Revoking a revoked key changes nothing.',
        tags: ['admin'],
        params: Type.Object({ keyId: Type.String() }),
        response: { 200: KeySchema, ...errors },
      },
    },
    async (request) => {
      const { keyId } = request.params;
      const owner = isUuid(keyId) ? await keyTeam(db, keyId) : null;
      const k =
        owner && (request.identity.operator || owner === request.identity.teamId)
          ? await revokeKey(db, owner, keyId)
          : null;
      if (!k) throw new RetortError('RETORT_NOT_FOUND', `No key ${keyId}.`);
      return keyResource(k);
    },
  );

  app.get<{ Querystring: { limit: number; cursor?: string; teamId?: string } }>(
    '/v1/admin/audit',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'The audit log, newest first',
        description:
          "Every write through the API (who, what, when, and how it was answered). Your team's; an operator sees every team's, or one with `teamId`.",
        tags: ['admin'],
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
          cursor: Type.Optional(BigIdSchema('The previous page’s nextCursor')),
          teamId: Type.Optional(Type.String({ format: 'uuid' })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(AuditSchema),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const teamId = request.identity.operator ? q.teamId : request.identity.teamId;
      const rows = await listAudit(db, {
        teamId,
        before: q.cursor ? BigInt(q.cursor) : undefined,
        limit: q.limit,
      });
      return {
        items: rows.map((r) => ({ ...r, createdAt: r.createdAt.toISOString() })),
        nextCursor: rows.length === q.limit ? rows[rows.length - 1]!.id : null,
      };
    },
  );
}
