/**
 * Completion scripts. Both ask the CLI itself (`protoctl __complete -- WORDS`)
 * for candidates, so flags and names are always current; `:files` falls back
 * to the shell's file completion.
 */

export function bashScript(): string {
  return `# protoctl bash completion. Install: protoctl completion bash > /etc/bash_completion.d/protoctl
# or add to ~/.bashrc:  source <(protoctl completion bash)
_protoctl_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  local out
  out=$(PROTOCTL_COMPLETE=1 protoctl __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
  if [[ "$out" == ":files" ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
    return 0
  fi
  local IFS=$'\\n'
  local values
  values=$(printf '%s\\n' "$out" | cut -f1)
  COMPREPLY=($(compgen -W "$values" -- "$cur"))
  if [[ \${#COMPREPLY[@]} -eq 1 && "\${COMPREPLY[0]}" == *: ]]; then compopt -o nospace 2>/dev/null; fi
}
complete -F _protoctl_complete protoctl
`;
}

export function zshScript(): string {
  return `#compdef protoctl
# protoctl zsh completion. Install: protoctl completion zsh > "\${fpath[1]}/_protoctl"
# or add to ~/.zshrc (after compinit):  source <(protoctl completion zsh)
_protoctl() {
  local out line
  local -a described plain
  out=$(PROTOCTL_COMPLETE=1 protoctl __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null) || return 1
  if [[ "$out" == ":files" ]]; then
    _files
    return
  fi
  for line in "\${(@f)out}"; do
    [[ -z "$line" ]] && continue
    if [[ "$line" == *$'\\t'* ]]; then
      described+=("\${\${line%%$'\\t'*}//:/\\\\:}:\${line#*$'\\t'}")
    else
      plain+=("$line")
    fi
  done
  (( \${#described} )) && _describe -t commands 'protoctl' described
  (( \${#plain} )) && compadd -- "\${plain[@]}"
  return 0
}
if [[ "\${funcstack[1]}" == "_protoctl" ]]; then
  _protoctl "$@"
else
  compdef _protoctl protoctl
fi
`;
}
