import type { RegistrationHook, RegistrationVerdict } from './options.js';

/**
 * One RegistrationHook made of several, asked in order: the first refusal is the verdict (the
 * hooks before it that had accepted are released, so nothing they set aside is left behind), and
 * otherwise the documents are merged, later members replacing earlier ones of the same name. The
 * result is asynchronous only when one of the hooks is.
 */
export function composeRegistrationHooks(...hooks: RegistrationHook[]): RegistrationHook {
  const release = (count: number, routingId: string, registration: object): void => {
    for (const hook of hooks.slice(0, count)) hook.released?.(routingId, registration);
  };
  const from = (index: number, routingId: string, options: Record<string, unknown>, registration: object, document: Record<string, unknown>): RegistrationVerdict | Promise<RegistrationVerdict> => {
    for (let i = index; i < hooks.length; i++) {
      const verdict = hooks[i]!.register(routingId, options, registration);
      if (verdict instanceof Promise) {
        return verdict.then(
          (settled) => {
            if ('refused' in settled) {
              release(i, routingId, registration);
              return settled;
            }
            return from(i + 1, routingId, options, registration, { ...document, ...settled.document });
          },
          (err: unknown) => {
            release(i, routingId, registration);
            throw err;
          },
        );
      }
      if ('refused' in verdict) {
        release(i, routingId, registration);
        return verdict;
      }
      document = { ...document, ...verdict.document };
    }
    return { document };
  };
  return {
    register: (routingId, options, registration) => from(0, routingId, options, registration, {}),
    released: (routingId, registration) => release(hooks.length, routingId, registration),
  };
}
