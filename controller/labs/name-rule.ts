/** The message for a name that breaks protoctl's naming rule (common/names.ts), saying which part. */
export function nameRule(kind: string, name: string, shown = `'${name}'`): string {
  const why =
    name.length > 63
      ? `is ${name.length} characters, above 63`
      : "may use only a-z, 0-9 and '-', starting with a letter or digit";
  return `invalid ${kind} name ${shown}: it ${why}`;
}
