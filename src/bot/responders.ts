import type { WebClient } from '@slack/web-api';

import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';

/**
 * Who counts as a responder: the user ids in RESPONDERS, plus the members of
 * its user groups, read with usergroups.users.list and cached briefly.
 */
export class ResponderDirectory {
  private readonly userIds: Set<string>;
  private readonly groupIds: string[];
  private readonly cache = new Map<string, { members: Set<string>; readAt: number }>();

  constructor(
    ids: string[] | undefined,
    private readonly deps: { client: WebClient; clock: Clock; logger: Logger; ttlMs?: number },
  ) {
    this.userIds = new Set((ids ?? []).filter((id) => id.startsWith('U') || id.startsWith('W')));
    this.groupIds = (ids ?? []).filter((id) => id.startsWith('S'));
  }

  get configured(): boolean {
    return this.userIds.size > 0 || this.groupIds.length > 0;
  }

  async isResponder(userId: string): Promise<boolean> {
    if (this.userIds.has(userId)) return true;
    for (const groupId of this.groupIds) {
      const members = await this.membersOf(groupId);
      if (members.has(userId)) return true;
    }
    return false;
  }

  private async membersOf(groupId: string): Promise<Set<string>> {
    const now = this.deps.clock.now();
    const cached = this.cache.get(groupId);
    if (cached && now - cached.readAt < (this.deps.ttlMs ?? 60_000)) return cached.members;
    try {
      const response = await this.deps.client.usergroups.users.list({ usergroup: groupId });
      const members = new Set(response.users ?? []);
      this.cache.set(groupId, { members, readAt: now });
      return members;
    } catch (error) {
      // Keep the last known members rather than locking responders out mid-incident.
      this.deps.logger.error({ groupId, err: error }, 'reading user group members failed');
      return cached?.members ?? new Set();
    }
  }
}
