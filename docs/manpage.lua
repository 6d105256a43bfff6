-- SPDX-License-Identifier: MIT
-- pandoc filter that turns docs/cli.md into the man page airlock(1) (docs/meson.build runs it).
-- The markdown page opens with a title and a paragraph for readers of the repository; a man
-- page opens with its NAME section. So everything before the first level-2 heading is left
-- out, and each heading moves up a level with its name in capitals as man pages spell them
-- (## Exit status becomes .SH EXIT STATUS, ### airlock run becomes .SS airlock run).
function Pandoc(doc)
  local blocks = pandoc.List()
  local started = false
  for _, block in ipairs(doc.blocks) do
    if block.t == 'Header' and block.level == 2 then
      started = true
    end
    if started then
      if block.t == 'Header' then
        block.level = block.level - 1
        if block.level == 1 then
          block.content = pandoc.Inlines(pandoc.utils.stringify(block.content):upper())
        end
      end
      blocks:insert(block)
    end
  end
  doc.blocks = blocks
  return doc
end
